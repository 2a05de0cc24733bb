"""``synthaug demo``: masks -> conditions -> MSDM -> targeted synthetic pairs in zarr -> segmentation.

Stages (each timed, each with a progress bar):

1. Data: generated nuclei layouts with toy H&E renders (default; the training set is made scarce in
   epithelial/columnar nuclei, the test set is not), or a real dataset folder (``--data``) cut
   into tiles, its own held-out split used for testing.
2. Conditions: HV maps, type maps and colour for a few training tiles (figure).
3. MSDM: the model shipped with synthaug (``"consep"``, trained on the CoNSeP train split; see
   its model card), or any ``synthaug train`` run folder (``--model``). The demo trains none.
4. Sampling: pairs targeted at epithelial nuclei, written to a zarr ``SyntheticCache``.
5. Segmentation: the same network, seed and budget, trained on real tiles alone and with
   ``SyntheticAugment`` drawing from the cache (the HoVer-Net-style ``synthaug.segment``); Dice, AJI,
   PQ, detection and per-type F1 on the held-out tiles.
6. ``report.html`` with the figures, the numbers and the exact settings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthaug._validation import default_device
from synthaug._version import __version__
from synthaug.conditions import ConditionLayout, colour_stats, compute_hv_maps
from synthaug.data import BenchmarkSplit, Sample, count_instances, open_dataset, tile_samples
from synthaug.data.toy import make_toy_samples
from synthaug.data.vocabulary import CONSEP_TYPES
from synthaug.demo.report import save_loss_curves, save_score_bars, write_report
from synthaug.viz import save_pair_grid

TARGET_CLASS = "epithelial"  # the columnar cells of colon; its id comes from the data's vocabulary

# Training tiles are deliberately poor in epithelial nuclei: the data-scarcity case synthaug targets.
SCARCE_TRAIN_SHARES = {"other": 0.10, "inflammatory": 0.40, "epithelial": 0.05, "spindle": 0.45}
TEST_SHARES = {"other": 0.10, "inflammatory": 0.30, "epithelial": 0.30, "spindle": 0.30}
# Toy tiles are small (48 px), so nuclei are drawn at 20x (half size) to hold a dozen or more per tile.
NUCLEUS_SCALE = 0.5


@dataclass
class DemoConfig:
    """Settings of one demo run; ``DemoConfig.preset("default"|"quick")`` gives the tested ones."""

    out_dir: Path = Path("demo-out")
    data: Path | None = None
    device: str | None = None
    seed: int = 0
    tile_size: int = 48
    num_train: int = 64
    num_test: int = 32
    # A shipped model name or a `synthaug train` run folder; its condition layout must match the data's.
    model: str = "consep"
    num_synthetic: int = 40
    sampling_batch_size: int = 16
    inference_steps: int = 15
    target_share: float = 0.6
    seg_steps: int = 200
    seg_batch_size: int = 8
    synthetic_prob: float = 0.5
    expected_minutes: float = 5.0
    # Plain conditional sampling: each guidance weight above 1 costs one more model forward per step,
    # which a 2-core CPU feels; the shipped model's fidelity was measured without guidance.
    guidance: dict[str, float] = field(default_factory=lambda: {"mask": 1.0, "text": 1.0, "colour": 1.0})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DemoConfig:
        """``"default"`` (under 5 minutes on 2 CPU cores) or ``"quick"`` (seconds; tests and CI)."""
        presets = {
            "default": {},
            "quick": dict(
                tile_size=32,
                num_train=12,
                num_test=6,
                num_synthetic=8,
                sampling_batch_size=8,
                inference_steps=4,
                seg_steps=12,
                seg_batch_size=4,
                expected_minutes=1.0,
            ),
        }
        if name not in presets:
            raise ValueError(f"`name` must be one of {sorted(presets)}, got {name!r}.")
        values = presets[name] | {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.data is not None:
            self.data = Path(self.data)
            if not self.data.is_dir():
                raise ValueError(f"`data` must be a dataset folder, got {str(self.data)!r} (not a folder).")
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError(f"`device` must be 'cpu' or 'cuda', got {self.device!r}.")
        if self.tile_size % 16 or self.tile_size < 32:
            raise ValueError(f"`tile_size` must be a multiple of 16 and at least 32, got {self.tile_size}.")


@dataclass
class DemoResult:
    report_path: Path
    scores: dict[str, dict[str, float]]
    seconds: dict[str, float]


def _model_summary(model: str, pipeline) -> dict[str, Any]:
    """Name, size and training data of the demo's model (from its run's training summary if any)."""
    from synthaug.model.loading import SUMMARY_FILE, resolve_model_path

    summary_path = resolve_model_path(model) / SUMMARY_FILE
    trained = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {
        "name": str(model),
        "parameters": sum(p.numel() for p in pipeline.model.parameters()),
        "trained_on": trained.get("trained_on"),
        "steps": trained.get("total_steps", trained.get("steps")),
    }


def _resolve_device(device: str | None) -> str:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` is 'cuda' but torch sees no GPU; use --device cpu.")
    return str(default_device(device))


def _renamed(samples: list[Sample], prefix: str) -> list[Sample]:
    return [dataclasses.replace(s, name=f"{prefix}{s.name}", group=f"{prefix}{s.group}") for s in samples]


def load_split(config: DemoConfig) -> tuple[BenchmarkSplit, bool]:
    """Stage 1: the train/test split (toy, or tiles of a real dataset); returns ``(split, is_toy)``."""
    size = config.tile_size
    if config.data is None:
        train = make_toy_samples(
            config.num_train,
            size,
            size,
            seed=config.seed,
            progress=True,
            type_shares=SCARCE_TRAIN_SHARES,
            size=NUCLEUS_SCALE,
        )
        test = make_toy_samples(
            config.num_test,
            size,
            size,
            seed=config.seed + 1,
            progress=True,
            type_shares=TEST_SHARES,
            size=NUCLEUS_SCALE,
        )
        split = BenchmarkSplit(
            _renamed(train, "train_"),
            _renamed(test, "test_"),
            type_names=CONSEP_TYPES.names,  # generated layouts use CoNSeP's types
            type_aliases=CONSEP_TYPES.aliases,
            provenance={
                "data": "generated layouts + toy H&E renders",
                "train_type_shares": SCARCE_TRAIN_SHARES,
                "test_type_shares": TEST_SHARES,
                "seed": config.seed,
            },
        )
        return split, True
    reader = open_dataset(config.data)
    splits = reader.splits()
    if "train" not in splits or "test" not in splits:
        raise ValueError(
            f"`data` {config.data} needs 'train' and 'test' splits for the demo, it has {splits}."
        )
    rng = np.random.default_rng(config.seed)

    def tiles(split_name: str, n: int) -> list[Sample]:
        patches = tile_samples(reader.load(split_name), size)
        keep = rng.choice(len(patches), size=min(n, len(patches)), replace=False)
        return [patches[i] for i in sorted(keep)]

    split = BenchmarkSplit(
        tiles("train", config.num_train),
        tiles("test", config.num_test),
        type_names=reader.type_names,
        type_aliases=reader.type_aliases,
        provenance={"data": str(config.data), "reader": reader.name, "tile_size": size, "seed": config.seed},
    )
    return split, False


def fresh_output_folder(out_dir: Path) -> Path:
    """``out_dir`` if it is missing or empty, else its first free ``run-NNN`` subfolder (created).

    The demo never deletes or overwrites: a second ``synthaug demo --out demo-out`` writes to
    ``demo-out/run-002/`` and leaves the first run's report and cache as they are.
    """
    out_dir = Path(out_dir)
    if out_dir.is_file():
        raise ValueError(f"`out_dir` {str(out_dir)!r} is an existing file; name a folder for the demo.")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir
    for n in range(2, 10_000):
        candidate = out_dir / f"run-{n:03d}"
        try:
            candidate.mkdir()  # atomic: two demos started together never share a folder
        except FileExistsError:
            continue
        return candidate
    raise ValueError(f"`out_dir` {str(out_dir)!r} holds 9,999 runs; choose another folder.")


def run_demo(config: DemoConfig) -> DemoResult:
    """Run every stage and write ``report.html`` into ``config.out_dir``."""
    from synthaug.augment import SyntheticAugment
    from synthaug.sampling.generate import generate_to_cache
    from synthaug.sampling.mask_sources import LayoutMaskSource, RealMaskSource
    from synthaug.sampling.pipeline import load_pipeline
    from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy
    from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, evaluate_segmenter, train_segmenter

    device = _resolve_device(config.device)
    out = fresh_output_folder(config.out_dir)
    data_kind = "toy data (generated layouts, toy H&E renders)" if config.data is None else str(config.data)
    print(
        f"synthaug {__version__} demo on {device}: {data_kind}. Expect about {config.expected_minutes:g} "
        f"minutes on a 2-core CPU; outputs in {out}/"
    )
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 2)
        clock = now
        print(f"[{stage}] done in {seconds[stage]:.1f} s")

    # 1. Data
    split, is_toy = load_split(config)
    type_names = dict(split.type_names)
    num_classes = max(type_names) + 1
    try:  # PanNuke's epithelial is 5, CoNSeP's 3: the data's own vocabulary decides
        target_id = split.vocabulary.resolve(TARGET_CLASS, "the demo's target class")
    except ValueError as err:
        raise ValueError(
            f"the demo targets {TARGET_CLASS!r} nuclei, but `data` {config.data} has types "
            f"{split.vocabulary.describe()}; use data with an epithelial class (CoNSeP, PanNuke, Lizard)."
        ) from err
    lap("1 data")

    # 2. Conditions
    shown = split.train[:3]
    save_pair_grid(
        out / "conditions.png",
        [s.image for s in shown],
        [s.inst for s in shown],
        [s.types for s in shown],
        hv_maps=[compute_hv_maps(s.inst) for s in shown],
        titles=[s.name for s in shown],
        type_names=type_names,
        suptitle="Training tiles: nuclei outlines by type, and HoVer-Net HV maps (MONAI convention)",
    )
    layout = ConditionLayout(num_types=num_classes - 1)
    # Tiles without nuclei have no foreground colour (colour_stats gives 0, 0, 0): leave them out.
    train_colour = np.mean(
        [colour_stats(s.image, s.inst).as_vector() for s in split.train if s.inst.any()], axis=0
    )
    lap("2 conditions")

    # 3. MSDM: a trained model, loaded (sampling only; `synthaug train` trains one's own)
    pipeline = load_pipeline(config.model, device=device)
    if pipeline.model.condition_layout != layout:
        raise ValueError(
            f"`model` {config.model!r} was trained on condition layout "
            f"{pipeline.model.condition_layout.to_dict()}, but the demo data build {layout.to_dict()}; "
            "pass a model trained on data with the same nucleus types."
        )
    model_card = _model_summary(config.model, pipeline)
    lap("3 MSDM loading")

    # 4. Targeted sampling into the zarr cache
    policy = TargetingPolicy(target_id, config.target_share, tolerance=0.1, vocabulary=split.vocabulary)
    if is_toy:
        base = LayoutMaskSource(
            config.tile_size,
            config.tile_size,
            seed=config.seed,
            # No prompt: the model paints with its learned text null (its prompts describe CoNSeP).
            meta={"source": "synthaug demo layouts"},
            type_shares=TEST_SHARES,
            size=NUCLEUS_SCALE,
        )
    else:
        base = RealMaskSource(list(split.train), edits=("dihedral", "elastic"), seed=config.seed, split=split)
    source = TargetedMaskSource(base, policy, seed=config.seed)
    cache = generate_to_cache(
        pipeline,
        source,
        str(out / "synthetic.zarr"),
        num_samples=config.num_synthetic,
        batch_size=config.sampling_batch_size,
        seed=config.seed,
        guidance=config.guidance,
        num_inference_steps=config.inference_steps,
        colour=train_colour,
        target={"type": type_names[target_id], "share": config.target_share},
    )
    shown = [cache.read(i) for i in range(min(4, len(cache)))]
    save_pair_grid(
        out / "synthetic_pairs.png",
        [s["image"] for s in shown],
        [s["inst"] for s in shown],
        [s["type"] for s in shown],
        hv_maps=[compute_hv_maps(s["inst"]) for s in shown],
        titles=[f"synthetic #{i}" for i in range(len(shown))],
        type_names=type_names,
        suptitle="MSDM samples targeted at epithelial nuclei (image painted on the mask)",
    )
    counts = cache.type_instance_counts().sum(axis=0)
    synth_share = float(counts[target_id] / max(1, counts[1:].sum()))
    train_counts = count_instances(split.train)
    real_share = train_counts.get(target_id, 0) / max(1, sum(train_counts.values()))
    lap("4 sampling")

    # 5. Segmentation with and without SyntheticAugment: the HoVer-Net-style segmenter, same seed and budget
    training = SegmenterTrainingConfig(
        steps=config.seg_steps,
        batch_size=config.seg_batch_size,
        crop=config.tile_size // 32 * 32,
        seed=config.seed,
        checkpoint_every=0,
        model=SegmenterConfig(type_names),
    )
    synthetic = SyntheticAugment(
        cache,
        prob=config.synthetic_prob,
        target_types=[target_id],
        num_types=num_classes - 1,
        type_names=type_names,
        read_ahead=0,
    )
    runs = {
        "real only": train_segmenter(
            split.train, training, device=device, desc="segmenter: real only", calibrate_on=split.train[:16]
        ),
        "real + SyntheticAugment": train_segmenter(
            split.train,
            training,
            synthetic=synthetic,
            device=device,
            desc="segmenter: + synthetic",
            calibrate_on=split.train[:16],
        ),
    }
    window = -(-config.tile_size // 32) * 32  # one window covers a whole test tile
    scores = {
        name: evaluate_segmenter(model, split.test, progress=False, roi_size=window)[0]
        for name, (model, _) in runs.items()
    }
    lap("5 segmentation")

    # 6. Report
    save_loss_curves(
        out / "segmentation_loss.png",
        {k: history.losses for k, (_, history) in runs.items()},
        title="Segmentation training loss (HoVerNetLoss)",
    )
    save_score_bars(
        out / "scores.png", scores, title="Held-out tiles: Dice, AJI, PQ, detection and per-type F1"
    )
    metrics = list(next(iter(scores.values())))
    notes = [
        f"Data: {data_kind}."
        + (
            " This is toy data: the numbers show that the path works, not how much "
            "synthesis helps on real tissue."
            if is_toy
            else ""
        ),
        f"MSDM: {model_card['name']} ({model_card['parameters'] / 1e6:.1f} M parameters"
        + (f", trained on {model_card['trained_on']}" if model_card.get("trained_on") else "")
        + f"), sampled with {config.inference_steps} DPM-Solver++ steps, no guidance.",
        f"Training tiles: {len(split.train)}; epithelial share of training nuclei {real_share:.1%}. "
        f"Synthetic pairs: {len(cache)}, epithelial share {synth_share:.1%} "
        f"(requested {config.target_share:.0%}).",
        f"Device: {device}. Wall time per stage (s): {json.dumps(seconds)}.",
    ]
    settings = {
        "synthaug": __version__,
        "device": device,
        "condition_channels": list(layout.channels),
        "demo": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
        "split": dict(split.provenance),
    }
    report = write_report(
        out,
        title="synthaug demo report",
        notes=notes,
        figures=[
            (
                "Conditions",
                "conditions.png",
                "Training tiles with nuclei outlines coloured by type and the HV "
                "maps MSDM is conditioned on.",
            ),
            (
                "Synthetic pairs",
                "synthetic_pairs.png",
                "Pairs read back from the zarr cache; outlines show the mask each image was painted on.",
            ),
            ("Segmentation loss", "segmentation_loss.png", "Same network, seed and budget for both runs."),
            (
                "Segmentation scores",
                "scores.png",
                "Held-out tiles; higher is better. Instances from the HV-map watershed, F1 by "
                "HoVer-Net's centroid pairing.",
            ),
        ],
        tables=[
            (
                "Segmentation scores (held-out tiles)",
                ["run", *metrics],
                [[name, *[scores[name][m] for m in metrics]] for name in scores],
            )
        ],
        settings=settings,
    )
    (out / "report.json").write_text(
        json.dumps(
            {
                "scores": scores,
                "seconds": seconds,
                "settings": settings,
                "epithelial_share": {"train": real_share, "synthetic": synth_share},
                "msdm": model_card,
                "synthetic_fraction_seen": {k: h.synthetic_fraction for k, (_, h) in runs.items()},
            },
            indent=2,
        )
    )
    lap("6 report")
    print(f"Total {sum(seconds.values()):.0f} s.")
    return DemoResult(report, scores, seconds)
