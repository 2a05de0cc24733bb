"""Training a :class:`NucleiSegmenter`: HoVer-Net's maps after geometry, its losses, a resumable loop.

One training draw is a MONAI dictionary (``Sample.to_dict()``) that goes through

1. a random crop to ``crop`` pixels (skipped when the sample already has that size);
2. ``synthetic`` (a ``SyntheticAugment``), when given: with its ``prob`` the crop is swapped for a
   cached synthetic pair, so real and synthetic draws meet the same geometry and maps;
3. flips and 90-degree turns (one draw for image and masks), mild contrast and blur on the image;
4. HV maps recomputed from the *transformed* instance mask (``HVMapsd``): a flip changes their sign,
   so they cannot be computed once up front;
5. the loss's references: NP one-hot (nucleus / background), HV, TP one-hot (background + types).

The loss is MONAI's ``HoVerNetLoss`` (NP: CE + Dice, HV: MSE + MSE of Sobel gradients inside
nuclei, TP: CE + Dice), the optimiser AdamW with a one-cycle schedule. A synthetic pair's nucleus
pixels and HV maps are exact by construction; its *types* are the mask's labels, which the MSDM
paints from (one condition channel per type) but not exactly: a segmenter trained on real CoNSeP
tiles gives 77 % of the painted nuclei it finds their label, against 82 % of real ones
(``benchmarks/results/fidelity_consep``). With ``synthetic_types=False`` the TP terms see the real
draws only (:func:`hovernet_loss`), so synthetic pairs teach where nuclei are, not what they are
(measured once on CoNSeP at 10 % of the tiles: it kept inflammatory F1, 0.40 against 0.27, and lost
epithelial, 0.31 against 0.42; so off by default). Between the two, ``synthetic_types=("epithelial",)``
types a synthetic draw's background and its nuclei of the named types only: the pairs still teach the
class they were targeted at, and the painted nuclei of the other classes teach none.
``synthetic_until`` below 1 stops the synthetic draws after that share of the steps: the rest of the
run, at the schedule's low learning rates, sees real tiles only.
Every ``checkpoint_every`` steps the weights, optimiser and schedule are written as safetensors +
JSON; a killed run called again with the same ``output_dir`` continues from there (the augmentation
stream after a resume is re-seeded from ``seed`` and the step, so it is reproducible but not the
uninterrupted one).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from synthaug._validation import check_int
from synthaug.data import NucleiDataset, Sample, TypeVocabulary
from synthaug.segment.model import HV, NP, TP, NucleiSegmenter, SegmenterConfig

CHECKPOINT_DIR = "checkpoint"
HISTORY_NAME = "training_history.json"


@dataclass
class SegmenterTrainingConfig:
    """Hyper-parameters of one segmenter run (recorded next to the weights).

    Attributes:
        steps: optimiser steps; batches are drawn with replacement by a sampler seeded from ``seed``.
        batch_size: crops per step.
        crop: training crop side in pixels (divisible by 32).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        seed: seeds the initial weights, the batch order and the augmentations.
        checkpoint_every: steps between resumable checkpoints (0: none).
        synthetic_types: what of a synthetic draw trains the TP (type) head: ``True`` every pixel;
            ``False`` none, types are learnt from the real draws only (NP and HV still learn from
            every draw); type names or ids (e.g. ``("epithelial",)``): background pixels and the
            nuclei of those types, not the other nuclei. Names resolve against
            ``model.type_names``; stored as sorted ids.
        synthetic_until: the share of the steps that may draw synthetic pairs; the steps after it
            draw real tiles only, so the run ends on the real domain at the schedule's low learning
            rates (synthetic pre-training, real fine-tuning). ``1.0``: synthetic draws throughout.
        model: the network (encoder, decoder widths, whether the encoder is pretrained).
    """

    steps: int = 2000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 250
    synthetic_types: bool | tuple[int, ...] = True
    synthetic_until: float = 1.0
    model: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = SegmenterConfig(**self.model)
        for name in ("steps", "batch_size", "crop"):
            check_int(getattr(self, name), name, minimum=1)
        if self.crop % 32:
            raise ValueError(f"`crop` must be divisible by 32 (five encoder strides), got {self.crop}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"`lr` must be a positive number, got {self.lr!r}.")
        check_int(self.checkpoint_every, "checkpoint_every", minimum=0, hint="0: no checkpoints")
        self.synthetic_types = _resolve_synthetic_types(self.synthetic_types, self.model.type_names)
        if isinstance(self.synthetic_until, bool) or not isinstance(self.synthetic_until, (int, float)):
            raise TypeError(
                "`synthetic_until` must be a number in [0, 1] (a share of the steps), "
                f"got {self.synthetic_until!r}."
            )
        if not 0 <= self.synthetic_until <= 1:
            raise ValueError(
                f"`synthetic_until` must be a share of the steps in [0, 1], got {self.synthetic_until!r}."
            )

    @property
    def synthetic_steps(self) -> int:
        """How many of the first steps may draw synthetic pairs (``synthetic_until`` of ``steps``)."""
        return round(self.synthetic_until * self.steps)


@dataclass
class TrainingHistory:
    """Per-step losses and what the draws were made of."""

    losses: list[float] = field(default_factory=list)
    draws: int = 0
    synthetic_draws: int = 0
    seconds: float = 0.0
    marker_threshold_pq: dict[str, float] = field(default_factory=dict)  # calibration, when run

    @property
    def synthetic_fraction(self) -> float:
        """Share of the training draws that were synthetic pairs."""
        return self.synthetic_draws / max(1, self.draws)


def training_transform(crop: int, synthetic: Callable | None = None, *, seed: int = 0) -> Callable:
    """The dictionary transform of one training draw (steps 1-4 of the module docstring)."""
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandFlipd,
        RandGaussianSmoothd,
        RandRotate90d,
        RandSpatialCropd,
    )

    from synthaug.augment import HVMapsd

    keys = ("image", "label", "inst")
    transforms = [RandSpatialCropd(keys, roi_size=(crop, crop), random_size=False)]
    transforms += [synthetic] if synthetic is not None else []
    transforms += [
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys, prob=0.5),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.8, 1.25)),
        RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.1, 1.0), sigma_y=(0.1, 1.0)),
        HVMapsd("inst", new_key_prefix="hv_"),
    ]
    return Compose(transforms).set_random_state(seed)


def collate_batch(items: list[dict], num_types: int) -> dict[str, torch.Tensor]:
    """Stack draws into images and HoVer-Net's training maps (one-hot NP/TP, float HV)."""
    image = torch.stack([torch.as_tensor(np.asarray(i["image"]), dtype=torch.float32) for i in items])
    inst = torch.stack([torch.as_tensor(np.asarray(i["inst"])[0], dtype=torch.int64) for i in items])
    batch = {
        "image": image,
        NP: torch.nn.functional.one_hot((inst > 0).long(), 2).permute(0, 3, 1, 2).float(),
        HV: torch.stack([torch.as_tensor(np.asarray(i["hv_inst"]), dtype=torch.float32) for i in items]),
        "is_synthetic": torch.as_tensor([bool(i.get("is_synthetic", False)) for i in items]),
    }
    if num_types:
        label = torch.stack([torch.as_tensor(np.asarray(i["label"])[0], dtype=torch.int64) for i in items])
        label = torch.where(inst > 0, label.clamp(0, num_types), 0)  # a type only where a nucleus is
        batch[TP] = torch.nn.functional.one_hot(label, num_types + 1).permute(0, 3, 1, 2).float()
    return batch


def train_segmenter(
    train: Sequence[Sample],
    config: SegmenterTrainingConfig,
    *,
    output_dir: str | Path | None = None,
    synthetic: Callable | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "segmenter",
    calibrate_on: Sequence[Sample] | None = None,
    draw_weights: Sequence[float] | None = None,
) -> tuple[NucleiSegmenter, TrainingHistory]:
    """Train a HoVer-Net-style segmenter on ``train`` (and ``synthetic`` draws, when given).

    Args:
        train: real training samples, each at least ``config.crop`` pixels on a side.
        config: the run's hyper-parameters; ``config.model.type_names`` sets the TP head.
        output_dir: where checkpoints, the final model (``model/``), ``training_history.json`` and
            ``loss.png`` go; ``None`` keeps everything in memory. A folder holding a finished model
            is refused (nothing is overwritten); one holding a checkpoint of the same config resumes.
        synthetic: a dictionary transform that swaps draws for synthetic pairs (``SyntheticAugment``;
            its cache tiles must be at least ``config.crop`` pixels).
        device: torch device.
        progress: show a tqdm bar.
        desc: the bar's label.
        calibrate_on: real training tiles on which the watershed marker threshold is chosen after
            training (``calibrate_marker_threshold``; never pass test tiles); ``None`` keeps
            HoVer-Net's 0.4.
        draw_weights: one non-negative weight per ``train`` sample: draws are made in proportion
            (with replacement, seeded), e.g. to over-sample tiles rich in a rare type; ``None``:
            uniform. Not part of the config: a resumed run must be given the same weights.

    Returns:
        The trained model (eval mode) and its :class:`TrainingHistory`.

    Raises:
        ValueError: on an empty or too-small ``train``, ``draw_weights`` of another length, negative,
            or all zero, or an ``output_dir`` with a finished model or a checkpoint of another
            configuration.
    """
    from monai.apps.pathology.losses import HoVerNetLoss

    samples = _check_train(train, config.crop)
    weights = _check_weights(draw_weights, len(samples))
    out = Path(output_dir) if output_dir is not None else None
    start, resume_state = 0, None
    if out is not None:
        start, resume_state = _prepare_output(out, config)
    # The initial weights come from the seed alone (a fresh CPU generator would not seed the heads).
    torch.manual_seed(config.seed)
    model = NucleiSegmenter(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    history = TrainingHistory()
    if resume_state is not None:
        history = _restore(out / CHECKPOINT_DIR, model, optimizer, schedule, device)
    loader = _draws(samples, config, synthetic, start, weights)
    loss_fn = HoVerNetLoss()
    began = time.time() - history.seconds
    model.train()
    step = start
    bar = tqdm(loader, total=config.steps, initial=start, desc=desc, unit="step", disable=not progress)
    for batch in bar:
        predictions = model(batch["image"].to(device))
        truth = {k: batch[k].to(device) for k in (NP, HV, TP) if k in batch}
        typed = typed_pixels(batch, config.synthetic_types)
        loss = hovernet_loss(loss_fn, predictions, truth, typed=None if typed is None else typed.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        history.losses.append(float(loss.item()))
        history.draws += len(batch["is_synthetic"])
        history.synthetic_draws += int(batch["is_synthetic"].sum())
        bar.set_postfix(loss=f"{history.losses[-1]:.3f}")
        if (
            out is not None
            and config.checkpoint_every
            and step % config.checkpoint_every == 0
            and step < config.steps
        ):
            history.seconds = time.time() - began
            _save_checkpoint(out / CHECKPOINT_DIR, model, optimizer, schedule, history, config, step)
    history.seconds = time.time() - began
    model.eval()
    if calibrate_on:
        from synthaug.segment.evaluate import calibrate_marker_threshold

        scores = calibrate_marker_threshold(model, calibrate_on, progress=progress)
        history.marker_threshold_pq = {f"{k:g}": v for k, v in scores.items()}
    if out is not None:
        _finish(out, model, history, config)
    return model, history


def _draws(
    samples: list[Sample],
    config: SegmenterTrainingConfig,
    synthetic: Callable | None,
    start: int,
    weights: torch.Tensor | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of steps ``start..steps``: ``synthetic`` swaps draws until ``synthetic_steps``."""
    generator = torch.Generator().manual_seed(config.seed)
    total = config.steps * config.batch_size
    if weights is None:
        order = torch.randint(len(samples), (total,), generator=generator)
    else:
        order = torch.multinomial(weights, total, replacement=True, generator=generator)
    switch = config.synthetic_steps if synthetic is not None else config.steps
    phases = [(start, max(start, switch), synthetic), (max(start, switch), config.steps, None)]
    loaders = []
    for first, end, swap in phases:
        if first == end:
            continue
        transform = training_transform(config.crop, swap, seed=config.seed + first)
        dataset = NucleiDataset(samples, transform=transform)
        loaders.append(
            torch.utils.data.DataLoader(
                dataset,
                batch_size=config.batch_size,
                sampler=order[first * config.batch_size : end * config.batch_size].tolist(),
                collate_fn=lambda items: collate_batch(items, config.model.num_types),
            )
        )
    return itertools.chain.from_iterable(loaders)


def hovernet_loss(
    loss_fn, predictions: dict, truth: dict, *, typed: torch.Tensor | None = None
) -> torch.Tensor:
    """``loss_fn`` (a MONAI ``HoVerNetLoss``), its TP terms restricted to the ``typed`` draws or pixels.

    ``typed`` is a bool per draw ``(B,)`` or per pixel ``(B, H, W)`` (``None``: every pixel). NP and
    HV always see the whole batch; TP's Dice + CE (with ``loss_fn``'s own smoothing and weights) see
    only the chosen pixels, and add nothing when none is chosen. With every pixel chosen this is
    ``loss_fn(predictions, truth)``; with whole draws chosen, ``loss_fn``'s TP terms on those draws.
    """
    if typed is None or TP not in predictions:
        return loss_fn(predictions, truth)
    loss = loss_fn({k: predictions[k] for k in (NP, HV)}, {k: truth[k] for k in (NP, HV)})
    pred, true = predictions[TP], truth[TP]
    if typed.ndim == 1:
        typed = typed[:, None, None].expand(-1, *pred.shape[2:])
    if typed.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(
            f"`typed` must be (B,) or (B, H, W) for TP of shape {tuple(pred.shape)}, got "
            f"{tuple(typed.shape)}."
        )
    if not typed.any():
        return loss
    from monai.losses import DiceLoss

    weight = typed[:, None].to(pred.dtype)
    # MONAI's Dice on the kept pixels: the others are zeroed in prediction and truth alike, so they add
    # nothing to any channel's intersection or sums (over a whole draw this equals dropping the draw).
    d = loss_fn.dice
    dice = DiceLoss(
        include_background=d.include_background,
        softmax=False,
        smooth_nr=d.smooth_nr,
        smooth_dr=d.smooth_dr,
        reduction=d.reduction,
        batch=d.batch,
    )(torch.softmax(pred, dim=1) * weight, true * weight)
    ce = torch.nn.functional.cross_entropy(pred, true.argmax(dim=1), reduction="none")[typed].mean()
    return loss + loss_fn.lambda_nc_dice * dice + loss_fn.lambda_nc_ce * ce


def typed_pixels(batch: dict, synthetic_types: bool | tuple[int, ...]) -> torch.Tensor | None:
    """Which pixels of ``batch`` train the TP head under ``synthetic_types`` (``None``: all of them).

    Real draws are typed everywhere; a synthetic draw everywhere (``True``), nowhere (``False``), or on
    its background and its nuclei of the ``synthetic_types`` ids.
    """
    if synthetic_types is True or TP not in batch:
        return None
    real = ~batch["is_synthetic"]
    if synthetic_types is False:
        return real
    kept = torch.isin(batch[TP].argmax(dim=1), torch.tensor((0, *synthetic_types)))
    return real[:, None, None] | kept


def _resolve_synthetic_types(value, type_names: dict[int, str]) -> bool | tuple[int, ...]:
    """``True``/``False`` as they are; type names, aliases or ids as sorted ids of ``type_names``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, np.ndarray):  # ids read from an array
        value = value.tolist()
    if isinstance(value, (str, int)) or not isinstance(value, Sequence) or not value:
        raise TypeError(
            "`synthetic_types` must be True, False or a non-empty sequence of type names or ids "
            f"(e.g. ('epithelial',)), got {value!r}."
        )
    vocabulary = TypeVocabulary.coerce(type_names)
    return tuple(sorted({vocabulary.resolve(item, "synthetic_types") for item in value}))


def _check_train(train: Sequence[Sample], crop: int) -> list[Sample]:
    if not isinstance(train, Sequence) or isinstance(train, (str, bytes)) or not train:
        raise ValueError("`train` must be a non-empty sequence of Sample records.")
    if not all(isinstance(s, Sample) for s in train):
        raise TypeError("`train` must contain synthaug.data.Sample records.")
    small = [s.name for s in train if min(s.shape) < crop]
    if small:
        raise ValueError(
            f"{len(small)} training samples (e.g. {small[0]!r}) are smaller than `crop`={crop}; "
            "pass a smaller crop or larger tiles."
        )
    return list(train)


def _check_weights(draw_weights: Sequence[float] | None, length: int) -> torch.Tensor | None:
    if draw_weights is None:
        return None
    weights = torch.as_tensor(np.asarray(draw_weights, dtype=np.float64))
    if weights.shape != (length,):
        raise ValueError(
            f"`draw_weights` must hold one weight per training sample ({length}), got shape "
            f"{tuple(weights.shape)}."
        )
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("`draw_weights` must be finite and non-negative, with at least one above zero.")
    return weights


def _prepare_output(out: Path, config: SegmenterTrainingConfig) -> tuple[int, dict | None]:
    if (out / "model").is_dir():
        raise ValueError(
            f"{out} already holds a trained segmenter (model/); choose a new output folder "
            "(nothing is overwritten)."
        )
    state_file = out / CHECKPOINT_DIR / "state.json"
    if not state_file.is_file():
        out.mkdir(parents=True, exist_ok=True)
        return 0, None
    state = json.loads(state_file.read_text())
    if state["config"] != _jsonable(config):
        raise ValueError(
            f"{out} holds a checkpoint of another configuration ({state['config']}); "
            "resume with the same settings or choose a new folder."
        )
    return int(state["step"]), state


def _jsonable(config: SegmenterTrainingConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def _save_checkpoint(path: Path, model, optimizer, schedule, history, config, step: int) -> None:
    """Weights and AdamW moments as safetensors; step, schedule, param groups and history as JSON."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    # Each step's tensors get their own file, named in state.json, which is replaced last: a kill at any
    # point leaves state.json beside the very tensors it describes (one shared file name would pair, for
    # a kill between two renames, newer weights with an older step and schedule).
    name = f"tensors-{step:07d}.safetensors"
    save_file(tensors, path / ".tensors.tmp")
    (path / ".tensors.tmp").replace(path / name)
    state = {
        "step": step,
        "tensors": name,
        "config": _jsonable(config),
        "param_groups": opt["param_groups"],
        "schedule": schedule.state_dict(),
        "history": asdict(history),
    }
    (path / ".state.tmp").write_text(json.dumps(state))
    (path / ".state.tmp").replace(path / "state.json")
    for old in path.glob("tensors*.safetensors"):  # superseded checkpoints of this run
        if old.name != name:
            old.unlink()


def _restore(path: Path, model, optimizer, schedule, device) -> TrainingHistory:
    state = json.loads((path / "state.json").read_text())
    # (checkpoints written before 2026-12-07 name no file: theirs is tensors.safetensors)
    tensors = load_file(path / state.get("tensors", "tensors.safetensors"), device="cpu")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value.to(device) if name != "step" else value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    schedule.load_state_dict(state["schedule"])
    return TrainingHistory(**state["history"])


def _finish(out: Path, model: NucleiSegmenter, history: TrainingHistory, config) -> None:
    model.save_pretrained(out / "model")
    record = {
        "config": _jsonable(config),
        **asdict(history),
        "synthetic_fraction": history.synthetic_fraction,
    }
    (out / HISTORY_NAME).write_text(json.dumps(record))
    loss_figure(history.losses, title=f"segmenter, seed {config.seed}").savefig(out / "loss.png", dpi=110)


def loss_figure(losses: Sequence[float], *, title: str = "segmenter"):
    """The training loss per step and its running mean, as a matplotlib ``Figure`` (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.4, label="per step")
    if len(losses) >= 10:
        window = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("HoVerNetLoss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
