"""Train MSDM with accelerate: one CPU, one GPU or many, the same function.

Output folder (``TrainConfig.output_dir``)::

    model/                 EMA weights, MSDM.save_pretrained (safetensors + config.json)
    scheduler/             the DDPMScheduler config (prediction_type, betas) sampling must reuse
    text_cache/            TextEmbeddingCache of every training prompt
    training_summary.json  data summary, config, steps, final loss
    loss.jsonl, loss.png   loss per optimiser step and its curve
    samples/step_*.png     generated | real | mask overlay, for fixed masks
    checkpoints/checkpoint-NNNNNN/   accelerate state + EMA (safetensors) + trainer_state.json

Resume checkpoints hold accelerate's own files (its optimizer/RNG states use ``torch.save``); they
are for resuming *this* run only. Everything meant to be shared is safetensors / JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, skip_first_batches
from accelerate.utils import GradientAccumulationPlugin
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from synthaug._validation import check_choice, check_int, check_probability, default_device
from synthaug.conditions import ConditionChannels
from synthaug.data import BenchmarkSplit, Sample
from synthaug.model._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from synthaug.model._reporting import GridMaker, read_loss_log, save_loss_curve
from synthaug.model.dataset import EpochShuffle, MSDMTrainDataset, item_seed, mask_available
from synthaug.model.encoders import MODALITIES
from synthaug.model.loading import (
    MODEL_SUBFOLDER,
    SCHEDULER_SUBFOLDER,
    SUMMARY_FILE,
    TEXT_CACHE_SUBFOLDER,
    load_msdm,
    resolve_model_path,
)
from synthaug.model.msdm import MODEL_PRESETS, MSDM, PREDICTION_TYPES
from synthaug.model.text import TextEmbeddingCache, metadata_to_text


@dataclass
class TrainConfig:
    """Everything ``train_msdm`` needs besides the data.

    Attributes:
        output_dir: run folder (see the module docstring for its layout).
        resolution: square crop size; a multiple of the model's downsampling factor.
        batch_size: per device, per micro-step.
        learning_rate: AdamW learning rate after warm-up.
        steps: optimiser steps.
        gradient_accumulation_steps: micro-steps per optimiser step.
        prediction_type: ``"v_prediction"`` (default: well-conditioned at every noise level, so
            a sampler's first, nearly pure-noise step cannot blow up) or ``"epsilon"``; stored in
            the model config.
        snr_gamma: min-SNR-gamma loss weighting (Hang et al. 2023); ``None`` = plain MSE. Stops
            the many nearly noise-free timesteps from dominating the gradient.
        condition_dropout: per-modality probability of using the null (``mask``, ``text``, ``colour``),
            drawn independently per sample; teaches the nulls classifier-free guidance needs.
        drop_all_prob: extra probability of dropping every modality at once (the unconditional model).
        ema_decay: EMA decay (diffusers ``EMAModel``; its warm-up keeps early averages short).
        mixed_precision: ``"auto"`` (bf16 where the device computes it natively: CUDA with bf16, or
            a CPU with AVX512-BF16/AMX, where the bare tiny UNet trained at 34 against 22 img/s in
            fp32; emulated bf16 on plain AVX-512 was slower than fp32), ``"no"``,
            ``"bf16"`` or ``"fp16"`` (autocast through accelerate).
        checkpoint_every: save a resumable checkpoint every N steps (0 = only at the end).
        export_every: export the EMA weights to ``model/`` every N steps (0 = only at the end), so a
            run killed at any point leaves a usable, loadable model.
        checkpoints_total_limit: keep only the newest N checkpoints.
        sample_every: write a sample grid every N steps (0 = only at the end).
        num_grid_samples: masks in each sample grid.
        grid_inference_steps: sampler steps for the grids (the pipeline's default DPM-Solver++).
        seed: seeds model initialisation, data order, noise and dropout.
        model_size: ``"tiny"``, ``"small"`` or ``"base"`` (``MSDM.from_preset``).
        condition_channels: spatial condition stack (default ``ConditionChannels()``).
        text_encoder: local BERT folder (``None``: the packaged all-MiniLM-L6-v2).
        text_max_length: token budget per prompt.
        lr_warmup_steps: linear warm-up of the learning rate.
        max_grad_norm: gradient clipping.
        num_workers: DataLoader workers.
        resume: continue from the newest checkpoint in ``output_dir`` if there is one.
        init_from: warm-start from exported weights (a model folder or a run folder with
            ``model/``), e.g. a previous session's run whose accelerate checkpoints are gone. The
            architecture comes from that model; the optimiser starts fresh.
        time_budget_minutes: stop early (checkpoint and export as usual) once this much wall time
            has passed in this session; ``None`` = run all ``steps``.
    """

    output_dir: str | Path
    resolution: int = 64
    batch_size: int = 8
    learning_rate: float = 2e-4
    steps: int = 1000
    gradient_accumulation_steps: int = 1
    prediction_type: str = "v_prediction"
    snr_gamma: float | None = 5.0
    condition_dropout: dict[str, float] = field(
        default_factory=lambda: {"mask": 0.1, "text": 0.1, "colour": 0.1}
    )
    drop_all_prob: float = 0.05
    ema_decay: float = 0.999
    mixed_precision: str = "auto"
    checkpoint_every: int = 500
    export_every: int = 500
    checkpoints_total_limit: int = 2
    sample_every: int = 500
    num_grid_samples: int = 4
    grid_inference_steps: int = 25
    seed: int = 0
    model_size: str = "cpu"
    condition_channels: ConditionChannels | None = None
    text_encoder: str | None = None
    text_max_length: int = 32
    lr_warmup_steps: int = 100
    max_grad_norm: float = 1.0
    num_workers: int = 0
    resume: bool = False
    init_from: str | Path | None = None
    time_budget_minutes: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.prediction_type, "prediction_type", PREDICTION_TYPES)
        check_choice(self.mixed_precision, "mixed_precision", ("auto", "no", "bf16", "fp16"))
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise ValueError(f"`snr_gamma` must be > 0 or None, got {self.snr_gamma!r}.")
        check_choice(self.model_size, "model_size", tuple(MODEL_PRESETS))
        for name in (
            "resolution",
            "batch_size",
            "steps",
            "gradient_accumulation_steps",
            "num_grid_samples",
            "grid_inference_steps",
            "checkpoints_total_limit",
        ):
            check_int(getattr(self, name), name, minimum=1)
        non_negative = (
            "checkpoint_every",
            "export_every",
            "sample_every",
            "lr_warmup_steps",
            "num_workers",
            "seed",
        )
        for name in non_negative:
            check_int(getattr(self, name), name, minimum=0)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}.")
        unknown = set(self.condition_dropout) - set(MODALITIES)
        if unknown:
            raise ValueError(
                f"`condition_dropout` has unknown modalities {sorted(unknown)}; "
                f"valid keys are {list(MODALITIES)}."
            )
        for name, p in self.condition_dropout.items():
            check_probability(p, f"condition_dropout[{name!r}]")
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:
            raise ValueError(f"`time_budget_minutes` must be > 0 or None, got {self.time_budget_minutes!r}.")
        check_probability(self.drop_all_prob, "drop_all_prob")
        check_probability(self.ema_decay, "ema_decay")
        if self.condition_channels is not None and not isinstance(self.condition_channels, ConditionChannels):
            raise TypeError(
                "`condition_channels` must be a ConditionChannels, "
                f"got {type(self.condition_channels).__name__}."
            )
        self.output_dir = Path(self.output_dir)

    def to_json_dict(self) -> dict:
        """JSON-ready copy (paths as strings, the condition channels as their dict)."""
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["init_from"] = None if self.init_from is None else str(self.init_from)
        out["condition_channels"] = (self.condition_channels or ConditionChannels()).to_dict()
        return out


def make_noise_scheduler(prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The training scheduler: 1000 steps, cosine betas (better than linear for small pixel images).

    ``timestep_spacing="trailing"`` is written into the config so every sampler built from it, in
    memory or from disk, starts at the last training step (t=999), where the model saw pure noise.
    """
    check_choice(prediction_type, "prediction_type", PREDICTION_TYPES)
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        timestep_spacing="trailing",
    )


def resolve_mixed_precision(mixed_precision: str, device: torch.device | str | None = None) -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` computes bf16 natively, else ``"no"``; others unchanged."""
    if mixed_precision != "auto":
        return mixed_precision
    device = default_device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "no"
    return "no"


def _release_single_process_state() -> None:
    """Forget the mixed precision of an earlier run in this process.

    accelerate keeps one process-wide ``AcceleratorState`` and refuses an ``Accelerator`` with
    another mixed precision, so a second ``train_msdm`` in one notebook or benchmark (fp32, then
    bf16) would fail. Under a distributed launch the state belongs to the launcher: kept.
    """
    from accelerate.state import AcceleratorState, GradientState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()  # accelerate's own reset (its tests use it the same way)
        GradientState._reset_state()


def _cpu_has_native_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16 in the CPU flags. oneDNN also "supports" bf16 on plain AVX-512 by
    emulation, which was slower than fp32 here (4.3 vs 7.4 img/s on an Ice Lake without either)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: stay in fp32 rather than guess
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def diffusion_loss(
    model: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    images: torch.Tensor,
    conditions: torch.Tensor,
    text_embeds: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    colour: torch.Tensor | None,
    *,
    drop: dict[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Mean squared error of the model's noise (or velocity) prediction at random timesteps.

    Args:
        model: an ``MSDM`` (possibly wrapped by accelerate).
        noise_scheduler: supplies ``add_noise`` and the ``prediction_type``.
        images: ``(B, 3, H, W)`` clean images in [-1, 1].
        conditions, text_embeds, text_mask, colour, drop: as ``MSDM.forward``.
        generator: draws the noise and timesteps (fixed generator = fixed loss, for evaluation).
        snr_gamma: min-SNR-gamma weighting: each sample's MSE is weighted by
            ``min(SNR, gamma) / SNR`` (epsilon) or ``min(SNR, gamma) / (SNR + 1)`` (v), the
            x0-space weight ``min(SNR, gamma)`` expressed in the prediction's own units.

    Returns:
        Scalar float32 loss.
    """
    batch = images.shape[0]
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator, device=images.device
    )
    noisy = noise_scheduler.add_noise(images, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(images, noise, timesteps)
    else:
        target = noise
    pred = model(noisy, timesteps, conditions, text_embeds, text_mask, colour, drop=drop).sample
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    per_sample = (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    snr = compute_snr(noise_scheduler, timesteps).float()
    clipped = snr.clamp(max=snr_gamma)
    is_v = noise_scheduler.config.prediction_type == "v_prediction"
    weight = clipped / (snr + 1) if is_v else clipped / snr
    return (per_sample * weight).mean()


def _draw_drops(
    config: TrainConfig, has_mask: torch.Tensor, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    batch, device = has_mask.shape[0], has_mask.device
    drop_all = torch.rand(batch, generator=generator, device=device) < config.drop_all_prob
    drops = {}
    for name in MODALITIES:
        p = config.condition_dropout.get(name, 0.0)
        drops[name] = drop_all | (torch.rand(batch, generator=generator, device=device) < p)
    drops["mask"] = drops["mask"] | ~has_mask  # label-level samples have no spatial condition
    return drops


def _warm_start(config: TrainConfig, channels: ConditionChannels, text_dim: int) -> tuple[MSDM, int]:
    """The exported model at ``config.init_from`` (fp32, trainable) and the steps it was trained for."""
    source = resolve_model_path(config.init_from)  # a folder, or a shipped name such as "consep"
    model = load_msdm(source, expected_channels=channels, torch_dtype=torch.float32).train()
    if model.config.prediction_type != config.prediction_type:
        raise ValueError(
            f"`init_from` {str(source)!r} predicts {model.config.prediction_type!r} but `prediction_type` "
            f"is {config.prediction_type!r}; pass prediction_type={model.config.prediction_type!r}."
        )
    if model.config.text_embed_dim != text_dim:
        raise ValueError(
            f"`init_from` {str(source)!r} expects {model.config.text_embed_dim}-wide text embeddings but "
            f"the text encoder gives {text_dim}; train with the encoder it names "
            f"({model.config.text_encoder!r})."
        )
    summary = source / SUMMARY_FILE
    prior = json.loads(summary.read_text()).get("total_steps", 0) if summary.is_file() else 0
    return model, int(prior or 0)


def _export_ema(model: MSDM, ema: EMAModel, target: Path) -> None:
    """EMA weights -> ``target`` (``save_pretrained``), replacing the old export only once complete."""
    partial = target.with_name(target.name + ".partial")
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        model.save_pretrained(partial)
    finally:
        ema.restore(model.parameters())
    previous = target.with_name(target.name + ".previous")
    if target.exists():
        target.rename(previous)
    partial.rename(target)
    if previous.exists():
        shutil.rmtree(previous)


def check_new_run_folder(output_dir: str | Path) -> None:
    """Refuse to start a new run in a folder that holds one (its model, log and checkpoints would mix).

    Raises:
        ValueError: ``output_dir`` is a file, or holds run files; the message names them and the fix.
    """
    out = Path(output_dir)
    if out.is_file():
        raise ValueError(f"`output_dir` {str(out)!r} is an existing file; name a folder for the run.")
    artefacts = (
        MODEL_SUBFOLDER,
        SCHEDULER_SUBFOLDER,
        TEXT_CACHE_SUBFOLDER,
        SUMMARY_FILE,
        "loss.jsonl",
        "checkpoints",
        "samples",
    )
    found = [name for name in artefacts if (out / name).exists()]
    if found:
        raise ValueError(
            f"`output_dir` {str(out)!r} already holds a training run ({', '.join(found)}); pass "
            "resume=True (CLI: --resume) to continue it, or choose a new folder. Nothing was changed."
        )


def _past_deadline(deadline: float, accelerator: Accelerator) -> bool:
    if deadline == math.inf:
        return False
    # Every process must stop at the same step, or the others would wait forever in a collective.
    flag = torch.tensor([float(time.perf_counter() >= deadline)], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="max").item())


def _data_summary(samples: Sequence[Sample], texts: Sequence[str]) -> dict:
    type_counts: Counter[int] = Counter()
    for s in samples:
        type_counts.update(s.inst_types.values())
    return {
        "n_samples": len(samples),
        "n_label_level": mask_available(samples).count(False),
        "n_nuclei": sum(len(s.inst_types) for s in samples),
        "instance_type_counts": {str(k): v for k, v in sorted(type_counts.items())},
        "sources": dict(Counter(s.meta.get("source", "unknown") for s in samples)),
        "image_sizes": sorted({f"{s.shape[0]}x{s.shape[1]}" for s in samples}),
        "prompts": sorted(set(texts)),
    }


def train_msdm(
    config: TrainConfig,
    samples: Sequence[Sample],
    *,
    text_cache: TextEmbeddingCache | None = None,
    split: BenchmarkSplit | None = None,
) -> Path:
    """Train an MSDM from scratch (or resume) and export it.

    Args:
        config: the run settings.
        samples: training samples (instance-level, or label-level with ``inst`` all zero).
        text_cache: a prepared text cache (e.g. loaded from a file so BERT need not be present);
            default: a new ``TextEmbeddingCache(config.text_encoder)``.
        split: the benchmark split ``samples`` come from; every sample must then be one of its
            training samples (``BenchmarkSplit.check_training_only``), so no held-out tile trains it.

    Returns:
        ``config.output_dir``, holding ``model/`` (EMA weights), ``scheduler/``, ``text_cache/`` and
        ``training_summary.json``.

    Raises:
        TypeError: if ``config`` is not a ``TrainConfig`` or ``samples`` holds non-``Sample`` items.
        ValueError: if ``samples`` is empty or the resolution does not suit the model.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}.")
    if isinstance(samples, Sample) or not isinstance(samples, Sequence):
        raise TypeError("`samples` must be a sequence of synthaug.data.Sample records.")
    factor = 2 ** (len(MODEL_PRESETS[config.model_size]["block_out_channels"]) - 1)
    if config.resolution % factor:
        raise ValueError(
            f"`resolution` {config.resolution} must be a multiple of {factor} "
            f"for model size {config.model_size!r}."
        )
    if split is not None:
        split.check_training_only(samples, purpose="MSDM training")
    out = config.output_dir
    if not config.resume:
        check_new_run_folder(out)
    _release_single_process_state()
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        # Every optimiser step averages exactly N micro-batches, also across the end of a pass
        # (accelerate's default syncs early there, giving a step of fewer); the resume arithmetic
        # (micro-batches = N x steps) relies on it.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.gradient_accumulation_steps, sync_with_dataloader=False
        ),
    )
    channels = config.condition_channels or ConditionChannels()

    # 1. Text: BERT once per distinct prompt, then a lookup table on the device.
    cache = text_cache or TextEmbeddingCache(config.text_encoder, max_length=config.text_max_length)
    texts = [metadata_to_text(s.meta) for s in samples]
    prompts = list(dict.fromkeys(texts))
    text_ids = [prompts.index(t) for t in texts]
    text_table, text_mask_table = cache.encode(prompts)
    text_table, text_mask_table = text_table.to(accelerator.device), text_mask_table.to(accelerator.device)
    # A sample whose metadata make no prompt trains the text null, as the pipeline samples it.
    text_missing = torch.tensor([not p for p in prompts], dtype=torch.bool, device=accelerator.device)

    # 2. Data, model, EMA, optimiser, schedulers.
    dataset = MSDMTrainDataset(
        samples, channels=channels, resolution=config.resolution, text_ids=text_ids, seed=config.seed
    )
    # Order and crops of every pass are functions of (seed, epoch, index): a resumed run, or one with
    # more DataLoader workers, trains on exactly the batches an uninterrupted one does.
    sampler = EpochShuffle(len(dataset), seed=config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=len(dataset) >= config.batch_size,
        num_workers=config.num_workers,
    )
    # Seeded initialisation without touching the caller's global RNG state; every later draw
    # (data order, augmentation, noise, dropout) comes from generators seeded from `config.seed`.
    prior_steps = 0
    if config.init_from is not None:
        model, prior_steps = _warm_start(config, channels, text_table.shape[-1])
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = MSDM.from_preset(
                config.model_size,
                condition_channels=channels,
                sample_size=config.resolution,
                text_embed_dim=text_table.shape[-1],
                text_encoder=cache.encoder_name,
                prediction_type=config.prediction_type,
            )
    ema = EMAModel(
        model.parameters(),
        decay=config.ema_decay,
        use_ema_warmup=True,
        power=3 / 4,
        model_cls=MSDM,
        model_config=model.config,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    lr_scheduler = get_scheduler(
        "constant_with_warmup",
        optimizer,
        num_warmup_steps=min(config.lr_warmup_steps, config.steps) * accelerator.num_processes,
        num_training_steps=config.steps * accelerator.num_processes,
    )
    noise_scheduler = make_noise_scheduler(config.prediction_type)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema.to(accelerator.device)
    grids = GridMaker(samples, config, channels, text_ids, text_table, text_mask_table)

    # 3. Resume.
    step, micro = 0, 0  # optimiser steps; micro-batches this process has drawn
    checked = False  # the model's inputs, validated on the first micro-batch
    checkpoint = latest_checkpoint(out) if config.resume else None
    if checkpoint is not None:
        state = load_checkpoint(accelerator, ema, checkpoint)
        step = state["step"]
        micro = state.get("micro_batches", step * config.gradient_accumulation_steps)
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    generator = torch.Generator(device=accelerator.device)

    # 4. Loop.
    log_path = out / "loss.jsonl"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        # Written first, so an exported model/ is loadable at every moment of the run.
        noise_scheduler.save_pretrained(out / SCHEDULER_SUBFOLDER)
        cache.save(out / TEXT_CACHE_SUBFOLDER)
    progress = tqdm(
        total=config.steps if config.time_budget_minutes is None else None,  # a budget ends it by time
        initial=step,
        desc="MSDM",
        disable=not accelerator.is_local_main_process,
    )
    started, start_step, micro_losses = time.perf_counter(), step, []
    deadline = math.inf if config.time_budget_minutes is None else started + 60 * config.time_budget_minutes
    epoch, skip = divmod(micro, len(loader))  # a resumed pass continues where its checkpoint left it
    while step < config.steps and not _past_deadline(deadline, accelerator):
        batches = skip_first_batches(loader, skip) if skip else loader
        # Set before iterating: non-persistent workers copy the dataset (and its epoch) per pass, and
        # accelerate's loader re-applies its own pass counter to the sampler when iterated.
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)  # also sets the sampler's
        else:
            sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        epoch, skip = epoch + 1, 0
        for batch in batches:
            # Noise, timesteps and condition dropout of micro-batch m: from (seed, rank, m) alone.
            generator.manual_seed(item_seed(config.seed, accelerator.process_index, micro, stream=2))
            micro += 1
            with accelerator.accumulate(model):
                drops = _draw_drops(config, batch["has_mask"], generator)
                ids = batch["text_id"]
                drops["text"] = drops["text"] | text_missing[ids]
                if not checked:  # once per run: MSDM.forward does not validate (it runs every step)
                    accelerator.unwrap_model(model).check_inputs(
                        batch["image"], batch["conditions"], text_table[ids], text_mask_table[ids],
                        batch["colour"], drop=drops,
                    )
                    checked = True
                loss = diffusion_loss(
                    model,
                    noise_scheduler,
                    batch["image"],
                    batch["conditions"],
                    text_table[ids],
                    text_mask_table[ids],
                    batch["colour"],
                    drop=drops,
                    generator=generator,
                    snr_gamma=config.snr_gamma,
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            ema.step(model.parameters())
            step += 1
            value = accelerator.gather(torch.stack(micro_losses).mean()[None]).mean().item()
            micro_losses = []
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss became {value} at step {step}; "
                    "lower `learning_rate` or use mixed_precision='bf16'."
                )
            progress.update(1)
            progress.set_postfix(loss=f"{value:.4f}")
            if accelerator.is_main_process:
                with log_path.open("a") as f:
                    f.write(
                        json.dumps({"step": step, "loss": value, "lr": lr_scheduler.get_last_lr()[0]}) + "\n"
                    )
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
                save_checkpoint(accelerator, ema, out, step, config.checkpoints_total_limit, micro)
            if config.export_every and step % config.export_every == 0 and accelerator.is_main_process:
                _export_ema(accelerator.unwrap_model(model), ema, out / MODEL_SUBFOLDER)
            if config.sample_every and step % config.sample_every == 0 and accelerator.is_main_process:
                grids(
                    accelerator.unwrap_model(model),
                    ema,
                    noise_scheduler.config,
                    out / "samples" / f"step_{step:06d}.png",
                    step,
                )
            if step >= config.steps or _past_deadline(deadline, accelerator):
                break
    progress.close()
    elapsed = time.perf_counter() - started

    # 5. Export: EMA weights, scheduler, text cache, summary, curve, a final grid.
    save_checkpoint(accelerator, ema, out, step, config.checkpoints_total_limit, micro)
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        grids(final, ema, noise_scheduler.config, out / "samples" / "final.png", step)
        _export_ema(final, ema, out / MODEL_SUBFOLDER)
        save_loss_curve(log_path, out / "loss.png")
        _, losses = read_loss_log(log_path)
        summary = {
            "data": _data_summary(samples, texts),
            "config": config.to_json_dict(),
            "steps": step,
            "warm_start_steps": prior_steps,
            "total_steps": prior_steps + step,
            "final_loss": float(np.mean(losses[-20:])) if len(losses) else None,
            "parameters": sum(p.numel() for p in final.parameters()),
            "seconds_this_session": round(elapsed, 2),
            "steps_this_session": step - start_step,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out
