"""The demo's stages, one function each; ``run_demo`` (``synthaug.demo.run``) times and chains them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthaug.conditions import ConditionChannels, colour_stats, compute_hv_maps
from synthaug.data import BenchmarkSplit, Sample, count_instances, open_dataset, tile_samples
from synthaug.data.toy import make_toy_samples
from synthaug.data.vocabulary import CONSEP_TYPES
from synthaug.demo.report import save_loss_curves, save_score_bars, write_report
from synthaug.viz import save_pair_grid

if TYPE_CHECKING:
    from synthaug.demo.run import DemoConfig

TARGET_CLASS = "epithelial"  # the columnar cells of colon; its id comes from the data's vocabulary

# Training tiles are deliberately poor in epithelial nuclei: the data-scarcity case synthaug targets.
SCARCE_TRAIN_SHARES = {"other": 0.10, "inflammatory": 0.40, "epithelial": 0.05, "spindle": 0.45}
TEST_SHARES = {"other": 0.10, "inflammatory": 0.30, "epithelial": 0.30, "spindle": 0.30}
# Toy tiles are small (48 px), so nuclei are drawn at 20x (half size) to hold a dozen or more per tile.
NUCLEUS_SCALE = 0.5

@dataclass
class SamplingResult:
    """What stage 4 leaves: the cache and the epithelial shares of real and synthetic nuclei."""

    cache: Any
    real_share: float
    synth_share: float


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


def target_type(split: BenchmarkSplit, config: DemoConfig) -> int:
    """Stage 1: the id of the demo's target class in the data's own vocabulary (CoNSeP 3, PanNuke 5)."""
    try:
        return split.vocabulary.resolve(TARGET_CLASS, "the demo's target class")
    except ValueError as err:
        raise ValueError(
            f"the demo targets {TARGET_CLASS!r} nuclei, but `data` {config.data} has types "
            f"{split.vocabulary.describe()}; use data with an epithelial class (CoNSeP, PanNuke, Lizard)."
        ) from err


def show_conditions(split: BenchmarkSplit, out: Path) -> tuple[ConditionChannels, np.ndarray]:
    """Stage 2: the conditions figure, the data's condition channels and the training tiles' mean colour."""
    type_names = dict(split.type_names)
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
    channels = ConditionChannels(num_types=max(type_names))
    # Tiles without nuclei have no foreground colour (colour_stats gives 0, 0, 0): leave them out.
    train_colour = np.mean(
        [colour_stats(s.image, s.inst).as_vector() for s in split.train if s.inst.any()], axis=0
    )
    return channels, train_colour


def load_demo_model(config: DemoConfig, channels: ConditionChannels, device: str):
    """Stage 3: the trained MSDM pipeline (sampling only; `synthaug train` trains one's own)."""
    from synthaug.sampling.pipeline import load_pipeline

    pipeline = load_pipeline(config.model, device=device)
    if pipeline.model.condition_channels != channels:
        raise ValueError(
            f"`model` {config.model!r} was trained on condition channels "
            f"{pipeline.model.condition_channels.to_dict()}, but the demo data build {channels.to_dict()}; "
            "pass a model trained on data with the same nucleus types."
        )
    return pipeline


def sample_targeted_pairs(
    config: DemoConfig, split: BenchmarkSplit, pipeline, target_id: int, colour: np.ndarray, out: Path,
    *, is_toy: bool,
) -> SamplingResult:
    """Stage 4: pairs targeted at the target class into ``out/synthetic.zarr``, and their figure."""
    from synthaug.sampling.generate import generate_to_cache
    from synthaug.sampling.mask_sources import LayoutMaskSource, RealMaskSource
    from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy

    type_names = dict(split.type_names)
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
    cache = generate_to_cache(
        pipeline,
        TargetedMaskSource(base, policy, seed=config.seed),
        str(out / "synthetic.zarr"),
        num_samples=config.num_synthetic,
        batch_size=config.sampling_batch_size,
        seed=config.seed,
        guidance=config.guidance,
        num_inference_steps=config.inference_steps,
        colour=colour,
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
    train_counts = count_instances(split.train)
    return SamplingResult(
        cache,
        real_share=train_counts.get(target_id, 0) / max(1, sum(train_counts.values())),
        synth_share=float(counts[target_id] / max(1, counts[1:].sum())),
    )


def compare_segmenters(config: DemoConfig, split: BenchmarkSplit, cache, target_id: int, device: str):
    """Stage 5: the same segmenter, seed and budget on real tiles alone and with ``SyntheticAugment``.

    Returns ``({run: (model, history)}, {run: metric table on the held-out tiles})``.
    """
    from synthaug.augment import SyntheticAugment
    from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, evaluate_segmenter, train_segmenter

    type_names = dict(split.type_names)
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
        num_types=max(type_names),
        type_names=type_names,
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
    return runs, scores


def write_demo_report(out: Path, notes: list[str], scores: dict, runs: dict, settings: dict) -> Path:
    """Stage 6: the loss and score figures and ``report.html``."""
    save_loss_curves(
        out / "segmentation_loss.png",
        {k: history.losses for k, (_, history) in runs.items()},
        title="Segmentation training loss (HoVerNetLoss)",
    )
    save_score_bars(
        out / "scores.png", scores, title="Held-out tiles: Dice, AJI, PQ, detection and per-type F1"
    )
    metrics = list(next(iter(scores.values())))
    return write_report(
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

