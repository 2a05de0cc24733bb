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

from synthaug._validation import default_device
from synthaug._version import __version__
from synthaug.demo.stages import (
    compare_segmenters,
    load_demo_model,
    load_split,
    sample_targeted_pairs,
    show_conditions,
    target_type,
    write_demo_report,
)


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
    # A shipped model name or a `synthaug train` run folder; its condition channels must match the data's.
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

    split, is_toy = load_split(config)
    target_id = target_type(split, config)
    lap("1 data")
    channels, train_colour = show_conditions(split, out)
    lap("2 conditions")
    pipeline = load_demo_model(config, channels, device)
    card = _model_summary(config.model, pipeline)
    lap("3 MSDM loading")
    sampled = sample_targeted_pairs(config, split, pipeline, target_id, train_colour, out, is_toy=is_toy)
    lap("4 sampling")
    runs, scores = compare_segmenters(config, split, sampled.cache, target_id, device)
    lap("5 segmentation")
    notes = [
        f"Data: {data_kind}."
        + (
            " This is toy data: the numbers show that the path works, not how much "
            "synthesis helps on real tissue."
            if is_toy
            else ""
        ),
        f"MSDM: {card['name']} ({card['parameters'] / 1e6:.1f} M parameters"
        + (f", trained on {card['trained_on']}" if card.get("trained_on") else "")
        + f"), sampled with {config.inference_steps} DPM-Solver++ steps, no guidance.",
        f"Training tiles: {len(split.train)}; epithelial share of training nuclei {sampled.real_share:.1%}. "
        f"Synthetic pairs: {len(sampled.cache)}, epithelial share {sampled.synth_share:.1%} "
        f"(requested {config.target_share:.0%}).",
        f"Device: {device}. Wall time per stage (s): {json.dumps(seconds)}.",
    ]
    settings = {
        "synthaug": __version__,
        "device": device,
        "condition_channels": list(channels.names),
        "demo": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
        "split": dict(split.provenance),
    }
    report = write_demo_report(out, notes, scores, runs, settings)
    (out / "report.json").write_text(
        json.dumps(
            {
                "scores": scores,
                "seconds": seconds,
                "settings": settings,
                "epithelial_share": {"train": sampled.real_share, "synthetic": sampled.synth_share},
                "msdm": card,
                "synthetic_fraction_seen": {k: h.synthetic_fraction for k, (_, h) in runs.items()},
            },
            indent=2,
        )
    )
    lap("6 report")
    print(f"Total {sum(seconds.values()):.0f} s.")
    return DemoResult(report, scores, seconds)

