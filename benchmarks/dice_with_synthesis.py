"""Does synthesis help segmentation? A HoVer-Net-style segmenter with and without synthetic pairs on CoNSeP.

Arms (same network, crops and augmentations; they differ in their training draws, and the arms on
every tile train longer: 6,000 steps, ``--steps-full``, against 3,000 on the 10 % cut, ``--steps``;
each synthetic arm has the steps of its real-only twin):

  real100              every CoNSeP training tile
  real100+targeted     + synthetic pairs with the epithelial share raised (masks from training tiles)
  real10               10 % of the training tiles (``scarcity_scenario``, the same cut for every seed)
  real10+untargeted    + synthetic pairs on the kept tiles' masks as they are
  real10+targeted      + synthetic pairs on the kept tiles' masks, epithelial share raised

Ablations (not run unless named in ``--arms``): ``real100-random-init`` and ``real10-random-init``
train the real-only arms from a random encoder, to measure what the ImageNet encoder brings;
``real10+oversampled`` is the naive answer to a rare class without synthesis: the kept real tiles,
drawn with ``--prob-scarce`` in proportion to their epithelial nuclei (as the targeted arm draws its
pairs) and uniformly otherwise.

Synthetic pairs come from the shipped ``consep`` MSDM (``--model``), sampled once into three zarr caches
under ``--work-dir`` (``_dice_caches.py``) from training masks only; ``SyntheticAugment`` swaps a draw
for a cached pair with probability ``--prob-full`` / ``--prob-scarce`` (targeted arms draw pairs in
proportion to their epithelial nuclei). With ``--real-types-only`` synthetic draws train the NP and HV
branches but not the type head; with ``--rare-types-only`` the type head learns from their background
and epithelial nuclei only, not from their painted nuclei of other types. Synthetic pairs are drawn in
the first half of the steps only (``--synthetic-until 0.5``): the second half, at the one-cycle
schedule's low learning rates, sees real tiles only (``1``: synthetic draws throughout, as the runs
before 2026-12-07).
Every (arm, seed) run writes its result (with its settings: steps, synthetic draw probability and
the rest, ``run_settings``) when it finishes, so the benchmark runs across sessions: call it again
and it continues (a finished run of other settings is refused with the flag to pass, not mixed in);
``--minutes`` stops starting new runs after that budget. The report is rebuilt from every finished
run in ``--work-dir`` each time (whatever ``--arms`` names), and caches are sampled only for arms
that still have runs to do.

Scoring on all CoNSeP test patches (``synthaug.segment.evaluate_segmenter``, with its default
test-time flips): Dice, AJI, PQ (per image), mPQ (CoNIC), detection and per-type F1 (HoVer-Net's
centroid pairing, 12 px). Outputs in
``--out``: ``results.json`` (every run, paired differences to the real-only twin), ``summary.json``
(``{arm: {metric: {mean, std, n}}}``), ``scores.png`` (per-type F1 and PQ per arm, seed spread) and
``predictions.png`` (a test patch, its truth and each arm's prediction).

``--whole-tiles`` also scores every finished run on the 14 whole CoNSeP test tiles, stitched from
their patches (HoVer-Net's protocol, the one of the published numbers; ``CoNSePReader.load_tiles``),
once per run into ``whole_tiles.json`` beside its ``result.json`` (about 80 s per run on 2 cores);
the report adds ``summary_whole_tiles.json`` and the paired differences on tiles. Toy layouts
(``--quick`` without data) are whole tiles already and are scored as they are.

    python benchmarks/dice_with_synthesis.py --work-dir runs/dice --minutes 120   # CPU, resumable
    python benchmarks/dice_with_synthesis.py --work-dir runs/dice --steps-full 3000  # every arm 3,000
    python benchmarks/dice_with_synthesis.py --quick --out /tmp/dice_quick       # smoke test
    python benchmarks/dice_with_synthesis.py --work-dir runs/dice --whole-tiles  # + per-tile scores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthaug.sampling.targeting import TARGETING_STRATEGIES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    build_toy_cache,
    calibration_tiles,
    device_description,
    git_commit,
    mean_std,
    paired_comparison,
    write_json,
)
from _dice_caches import RARE, sample_caches  # noqa: E402

TILES_FILE = "whole_tiles.json"  # a run's scores on whole test tiles, beside its result.json
ARMS = ("real100", "real100+targeted", "real10", "real10+untargeted", "real10+targeted")
# the real-only arms without ImageNet weights; real tiles over-sampled towards the rare class
ABLATIONS = ("real100-random-init", "real10-random-init", "real10+oversampled")
TWIN = {
    "real100+targeted": "real100",
    "real10+untargeted": "real10",
    "real10+targeted": "real10",
    "real100-random-init": "real100",
    "real10-random-init": "real10",
    "real10+oversampled": "real10",
}
CACHE_OF = {
    "real100+targeted": "targeted100",
    "real10+untargeted": "untargeted10",
    "real10+targeted": "targeted10",
}
METRICS = (
    "Dice",
    "AJI",
    "PQ",
    "mPQ",
    "F1_detection",
    "F1_other",
    "F1_inflammatory",
    "F1_epithelial",
    "F1_spindle",
)


@dataclass(frozen=True)
class Budget:
    steps: int  # optimiser steps of the arms on the 10 % cut
    batch_size: int
    crop: int
    num_synthetic: int
    sampler_steps: int
    test_every: int  # score every n-th test patch (1: all)
    # Steps of the arms on every training tile: ten times the tiles are still being learnt when the
    # 10 % arms have seen theirs hundreds of times (real100 PQ 0.419 / 0.443 / 0.459 at 1,500 /
    # 3,000 / 6,000 steps on CoNSeP, 3 seeds each).
    steps_full: int

    def steps_of(self, arm: str) -> int:
        """The optimiser steps of ``arm``: ``steps_full`` on every tile, ``steps`` on the 10 % cut."""
        return self.steps_full if keep_of(arm) == "100" else self.steps


FULL = Budget(
    steps=3000, batch_size=8, crop=128, num_synthetic=256, sampler_steps=15, test_every=1, steps_full=6000
)
QUICK = Budget(steps=3, batch_size=2, crop=64, num_synthetic=8, sampler_steps=2, test_every=1, steps_full=3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    parser.add_argument("--model", default="consep", help="MSDM that paints the synthetic pairs")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "dice_with_synthesis")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dice_consep")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, help="optimiser steps of the arms on the 10 %% cut (default 3000; quick 3)"
    )
    parser.add_argument(
        "--steps-full", type=int, help="optimiser steps of the arms on every tile (default 6000; quick 3)"
    )
    parser.add_argument(
        "--prob-full", type=float, default=0.25, help="synthetic draw probability, 100 %% arms"
    )
    parser.add_argument(
        "--prob-scarce", type=float, default=0.5, help="synthetic draw probability, 10 %% arms"
    )
    parser.add_argument("--share", type=float, default=0.5, help="epithelial share of targeted masks")
    parser.add_argument(
        "--targeting",
        choices=sorted(TARGETING_STRATEGIES),
        default="select",
        help="select: the closest of 16 real crops, unedited; edit: then copy/remove nuclei to the share",
    )
    typing = parser.add_mutually_exclusive_group()
    typing.add_argument(
        "--real-types-only",
        action="store_true",
        help="synthetic draws train NP and HV, not the type head (SegmenterTrainingConfig.synthetic_types)",
    )
    typing.add_argument(
        "--rare-types-only",
        action="store_true",
        help=f"synthetic draws train the type head on background and {RARE} nuclei only",
    )
    parser.add_argument(
        "--synthetic-until",
        type=float,
        default=0.5,
        help="share of the steps drawing synthetic pairs; real tiles only after (default 0.5; 1: throughout)",
    )
    parser.add_argument(
        "--whole-tiles",
        action="store_true",
        help="also score each finished run on the whole test tiles (HoVer-Net's protocol), once per run",
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="start no new run (or tile scoring) after this long"
    )
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of the arms")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a few steps on toy data and toy caches")
    args = parser.parse_args(argv)
    args.budget = QUICK if args.quick else FULL
    for flag in ("steps", "steps_full"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}.")
    given = {k: getattr(args, k) for k in ("steps", "steps_full") if getattr(args, k) is not None}
    args.budget = dataclasses.replace(args.budget, **given)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(args.arms) - set(ARMS + ABLATIONS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose among {list(ARMS + ABLATIONS)}.")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1 (3 for a spread).")
    return args


def load_splits(args):
    """CoNSeP's train/test split and its 10 % cut; toy layouts in --quick when the data are absent."""
    from synthaug.data import BenchmarkSplit, open_dataset, scarcity_scenario

    if args.data.is_dir():
        reader = open_dataset(args.data)
        split = BenchmarkSplit.from_reader(reader, train="train", test="test")
        note = f"{reader.name} at {args.data}"
        if args.quick:
            split = BenchmarkSplit(
                train=split.train[:40:4],
                test=split.test[:3],
                type_names=split.type_names,
                provenance=split.provenance,
            )
            note += " (quick: 10 train / 3 test patches)"
    elif args.quick:
        split, note = _toy_split(), "toy layouts (no real data found)"
    else:
        raise SystemExit(f"no dataset at {args.data}; pass --data (the benchmark needs real data).")
    split = BenchmarkSplit(
        train=split.train,
        test=split.test[:: args.budget.test_every],
        type_names=split.type_names,
        provenance=split.provenance,
    )
    scarce = scarcity_scenario(split, keep_fraction=0.1 if not args.quick else 0.3, unit="group", seed=0)
    return {"100": split, "10": scarce}, note


def _toy_split():
    from synthaug.data import generate_layout, render_toy_tile, split_by_group
    from synthaug.data.record import Sample

    samples = []
    for i in range(24):
        layout = generate_layout(128, 128, seed=1000 + i)
        image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=1000 + i)
        samples.append(
            Sample(image, layout.inst, layout.types, layout.inst_types, name=f"toy{i}", group=f"g{i // 2}")
        )
    names = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    return split_by_group(samples, test_fraction=0.25, seed=0, type_names=names)


def prepare_caches(args, splits) -> tuple[dict[str, str], str]:
    if not args.quick:
        to_do = [a for a in args.arms if any(not _finished(args, a, s) for s in range(args.seeds))]
        urls = sample_caches(
            splits,
            {CACHE_OF[a] for a in to_do if a in CACHE_OF},
            args.work_dir,
            model=args.model,
            tile=args.budget.crop,
            num_samples=args.budget.num_synthetic,
            share=args.share,
            steps=args.budget.sampler_steps,
            targeting=args.targeting,
            device=args.device,
        )
        return urls, f"sampled from the {args.model!r} MSDM, training masks only"
    urls = {}
    for name in ("targeted100", "untargeted10", "targeted10"):
        urls[name] = f"memory://dice-quick-{name}-{time.time_ns()}"
        build_toy_cache(urls[name], num_samples=args.budget.num_synthetic, size=args.budget.crop, seed=0)
    return urls, "toy layouts + render_toy_tile (SMOKE TEST: not MSDM output)"


def keep_of(arm: str) -> str:
    """Which training split an arm uses: "100" (every tile) or "10" (the scarcity cut)."""
    return arm.split("+")[0].removesuffix("-random-init").removeprefix("real")


def _run_file(args, arm: str, seed: int, name: str) -> Path:
    return args.work_dir / "runs" / arm / f"seed{seed}" / name


def _targeted(arm: str) -> bool:
    """Whether ``arm`` draws targeted pairs (epithelial share raised, drawn towards the rare class)."""
    return arm in CACHE_OF and CACHE_OF[arm].startswith("targeted")


def run_settings(args, arm: str) -> dict:
    """What a run of ``arm`` was trained with besides its seed, recorded in its ``result.json``.

    A real-only arm has its steps only; a synthetic arm adds how often and until when it drew pairs
    and whether they trained the type head; a targeted one the share and targeting of its masks.
    """
    settings = {"steps": args.budget.steps_of(arm)}
    if arm in CACHE_OF or arm.endswith("+oversampled"):
        settings["prob"] = args.prob_scarce if keep_of(arm) == "10" else args.prob_full
    if arm in CACHE_OF:
        settings["synthetic_until"] = args.synthetic_until
        settings["synthetic_types"] = synthetic_types(args)
    if _targeted(arm):
        settings["share"] = args.share
        settings["targeting"] = args.targeting
    return settings


def synthetic_types(args) -> bool | list[str]:
    """What of a synthetic draw trains the type head: all (True), none (False) or the rare class."""
    if args.rare_types_only:
        return [RARE]
    return not args.real_types_only


def _flag(arm: str, name: str, value) -> str:
    """The command-line flag that asks for ``value`` of setting ``name`` for ``arm``."""
    if name == "synthetic_types":
        return {True: "neither --real-types-only nor --rare-types-only", False: "--real-types-only"}.get(
            value, "--rare-types-only"
        )
    full = keep_of(arm) == "100"
    flag = {
        "steps": "--steps-full" if full else "--steps",
        "prob": "--prob-full" if full else "--prob-scarce",
        "synthetic_until": "--synthetic-until",
        "share": "--share",
        "targeting": "--targeting",
    }[name]
    return f"{flag} {value}"


def _finished(args, arm: str, seed: int) -> bool:
    """Whether (arm, seed) has its result; one run with other settings stops the benchmark.

    Steps are checked on every run; the other settings on the runs that record them (from
    2026-12-07 on).
    """
    file = _run_file(args, arm, seed, "result.json")
    if not file.is_file():
        return False
    record = json.loads(file.read_text())
    for name, wanted in run_settings(args, arm).items():
        if name != "steps" and name not in record:
            continue
        if record.get(name) != wanted:
            raise SystemExit(
                f"{file} was run with {name} {record.get(name)}, not {wanted}: pass "
                f"{_flag(arm, name, record.get(name))} to continue this benchmark, or another --work-dir for "
                "a new one (finished runs are never mixed or replaced)."
            )
    return True


def load_test_tiles(args, splits) -> list:
    """The whole test tiles: CoNSeP's stitched from its patches; toy layouts are whole already."""
    if not args.data.is_dir():
        return splits["100"].test
    from synthaug.data import open_dataset

    tiles = open_dataset(args.data).load_tiles("test")  # a reader without tiles refuses
    return tiles[:2] if args.quick else tiles


def score_whole_tiles(args, arm: str, seed: int, tiles: list, type_names) -> dict:
    """Score one finished run's saved model on whole tiles, with the marker threshold it was scored at."""
    from synthaug.segment import evaluate_segmenter, load_segmenter

    result = json.loads(_run_file(args, arm, seed, "result.json").read_text())
    folder = _run_file(args, arm, seed, "train") / "model"
    if not folder.is_dir():  # e.g. a work dir rebuilt from results.json: nothing to score
        print(f"{arm} s{seed}: no saved model in {folder}; not scored on whole tiles")
        return {}
    model = load_segmenter(folder, device=args.device)
    started = time.time()
    table, _ = evaluate_segmenter(
        model, tiles, type_names=dict(type_names), progress=False, marker_threshold=result["marker_threshold"]
    )
    record = {"metrics": table, "num_tiles": len(tiles), "seconds": time.time() - started}
    write_json(_run_file(args, arm, seed, TILES_FILE), record)
    print(f"{arm} s{seed} on {len(tiles)} whole tiles: PQ {table['PQ']:.3f}")
    return record


def run_arm(args, arm: str, seed: int, splits, caches) -> dict:
    """Train one (arm, seed), score it on the test split, write ``result.json``; reuse it when present."""
    from synthaug.augment import SyntheticAugment, sample_draw_probabilities
    from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, evaluate_segmenter, train_segmenter

    folder = args.work_dir / "runs" / arm / f"seed{seed}"
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    split = splits[keep_of(arm)]
    names = dict(split.type_names)
    settings = run_settings(args, arm)
    synthetic = None
    if arm in CACHE_OF:
        rare = split.vocabulary.resolve(RARE)
        synthetic = SyntheticAugment(
            caches[CACHE_OF[arm]],
            prob=settings["prob"],
            target_types=[rare] if _targeted(arm) else None,
            num_types=max(names),
            type_names=names,
            preload=True,
        ).set_random_state(seed)
    b = args.budget
    config = SegmenterTrainingConfig(
        steps=settings["steps"],
        batch_size=b.batch_size,
        crop=b.crop,
        seed=seed,
        synthetic_types=synthetic_types(args),
        synthetic_until=args.synthetic_until,
        model=SegmenterConfig(names, pretrained=not arm.endswith("-random-init")),
    )
    weights = None
    if arm.endswith("+oversampled"):
        # with --prob-scarce a tile in proportion to its rare nuclei (as the pairs), else uniformly
        weights = sample_draw_probabilities(
            split.train,
            split.vocabulary.num_types,
            target_types=[split.vocabulary.resolve(RARE)],
            uniform_share=1 - settings["prob"],
        )
    started = time.time()
    if (folder / "train" / "model").is_dir():  # trained, killed before scoring: score it now
        model, history = _trained(folder / "train", calibration_tiles(split.train))
    else:
        model, history = train_segmenter(
            split.train,
            config,
            output_dir=folder / "train",
            synthetic=synthetic,
            device=args.device,
            desc=f"{arm} s{seed}",
            # The watershed threshold is chosen on (at most 32 of) the arm's own real training patches.
            calibrate_on=calibration_tiles(split.train),
            draw_weights=weights,
        )
    table, predictions = evaluate_segmenter(model, split.test, progress=False)
    shown = predictions[_figure_index(split)]
    np.save(folder / "figure_prediction.npy", np.stack([shown.inst, shown.types]))
    result = {
        "arm": arm,
        "seed": seed,
        **settings,
        "metrics": table,
        "num_train": len(split.train),
        "synthetic_fraction": history.synthetic_fraction,
        "train_seconds": history.seconds,
        "seconds": time.time() - started,
        "final_loss": float(np.mean(history.losses[-50:])),
        "marker_threshold": model.config.marker_threshold,
        "marker_threshold_pq_on_train": history.marker_threshold_pq,
    }
    write_json(result_file, result)
    return result


def _trained(folder: Path, calibrate_on: list):
    """A finished training run's model and history, with its marker threshold calibrated."""
    from synthaug.segment import TrainingHistory, calibrate_marker_threshold, load_segmenter

    model = load_segmenter(folder)
    record = json.loads((folder / "training_history.json").read_text())
    fields = TrainingHistory.__dataclass_fields__
    history = TrainingHistory(**{k: v for k, v in record.items() if k in fields})
    scores = calibrate_marker_threshold(model, calibrate_on, progress=False)
    history.marker_threshold_pq = {f"{k:g}": v for k, v in scores.items()}
    return model, history


def _figure_index(split) -> int:
    """The test patch with the most epithelial nuclei (the figure shows the rare class)."""
    from synthaug.conditions import instance_type_votes

    rare = split.vocabulary.resolve(RARE)
    epithelial = [int((instance_type_votes(s.inst, s.types)[1] == rare).sum()) for s in split.test]
    return int(np.argmax(epithelial))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    if args.quick:
        torch.set_num_threads(1)
    splits, data_note = load_splits(args)
    caches, cache_note = prepare_caches(args, splits)
    tiles = load_test_tiles(args, splits) if args.whole_tiles else None
    skipped = []
    for seed in range(args.seeds):  # seed-major, so a partial benchmark has every arm at equal n
        for arm in args.arms:
            late = args.minutes is not None and time.time() - started > 60 * args.minutes
            if not _finished(args, arm, seed):
                if late:
                    skipped.append(f"{arm} s{seed}")
                    continue
                run_arm(args, arm, seed, splits, caches)
            if tiles is not None and not _run_file(args, arm, seed, TILES_FILE).is_file():
                if late:
                    skipped.append(f"{arm} s{seed} (whole tiles)")
                    continue
                score_whole_tiles(args, arm, seed, tiles, splits["100"].type_names)
    report(args, splits, data_note, cache_note)
    if skipped:
        print(f"time budget spent; not started: {', '.join(skipped)} (run the same command to continue)")
    return 0


def finished_runs(work_dir: Path) -> dict[str, list[dict]]:
    """Every finished run under ``work_dir``, ``{arm: [result, ...]}`` by seed, arms in report order.

    A run scored on whole tiles carries them as ``result["metrics_whole_tiles"]``.
    """
    per_arm = {}
    for arm in ARMS + ABLATIONS:
        rows = []
        for file in (work_dir / "runs" / arm).glob("seed*/result.json"):
            row = json.loads(file.read_text())
            if (file.parent / TILES_FILE).is_file():
                row["metrics_whole_tiles"] = json.loads((file.parent / TILES_FILE).read_text())["metrics"]
            rows.append(row)
        if rows:
            per_arm[arm] = sorted(rows, key=lambda r: r["seed"])
    return per_arm


def summarise(per_arm: dict[str, list[dict]], key: str = "metrics") -> dict:
    """``{arm: {metric: {mean, std, n}}}`` over the runs that have ``key`` (their patch or tile scores)."""
    summary = {}
    for arm, rows in per_arm.items():
        scored = [r[key] for r in rows if key in r]
        if scored:
            summary[arm] = {
                m: dict(zip(("mean", "std"), mean_std([t[m] for t in scored])), n=len(scored))
                for m in METRICS
                if m in scored[0]
            }
    return summary


def compare_to_twins(per_arm: dict[str, list[dict]], summary: dict, key: str = "metrics") -> dict:
    """Each arm's paired differences to its real-only twin, over the seeds both have ``key`` for."""
    comparisons = {}
    for arm, twin in TWIN.items():
        if arm in summary and twin in summary:
            runs = {a: {r["seed"]: r[key] for r in per_arm[a] if key in r} for a in (arm, twin)}
            seeds = sorted(set(runs[arm]) & set(runs[twin]))
            comparisons[arm] = {
                "baseline": twin,
                "seeds": seeds,
                **{
                    m: paired_comparison([runs[arm][s][m] for s in seeds], [runs[twin][s][m] for s in seeds])
                    for m in summary[arm]
                },
            }
    return comparisons


def report(args, splits, data_note: str, cache_note: str) -> None:
    from _dice_report import plot_predictions, plot_scores, print_table

    args.out.mkdir(parents=True, exist_ok=True)
    per_arm = finished_runs(args.work_dir)
    results = [r for rows in per_arm.values() for r in rows]
    summary, tiles = summarise(per_arm), summarise(per_arm, "metrics_whole_tiles")
    comparisons = compare_to_twins(per_arm, summary)
    tile_comparisons = compare_to_twins(per_arm, tiles, "metrics_whole_tiles")
    b = args.budget
    record = {
        "benchmark": "dice_with_synthesis",
        "smoke_test": args.quick,
        "note": "SMOKE TEST: the numbers show the path runs, nothing about synthesis."
        if args.quick
        else "CoNSeP test split, HoVer-Net-style segmenter (synthaug.segment), seeds per arm as n.",
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "device": device_description(args.device),
        "date": time.strftime("%Y-%m-%d"),
        "data": data_note,
        "synthetic": cache_note,
        "config": {
            **vars(b),
            "prob_full": args.prob_full,
            "prob_scarce": args.prob_scarce,
            "target_share": args.share,
            "targeting": args.targeting,
            "synthetic_types": synthetic_types(args),
            "synthetic_until": args.synthetic_until,
            "test_time_flips": True,
            "rare_type": RARE,
            "threads": torch.get_num_threads(),
            "segmenter": "ImageNet EfficientNet-Lite0 encoder (random in *-random-init), an SMP U-Net "
            "decoder per branch (NP, HV, TP), HoVerNetLoss",
            "instances": "MONAI HoVerNetInstanceMapPostProcessing (watershed on HV gradients)",
            "F1 pairing radius px": 12,
        },
        "num_train": {k: len(v.train) for k, v in splits.items()},
        "num_test": len(splits["100"].test),
        "training_wall_hours": sum(r["train_seconds"] for r in results) / 3600,  # on `threads` cores
        "summary": summary,
        "vs_real_only": comparisons,
        "summary_whole_tiles": tiles,  # the runs scored with --whole-tiles: HoVer-Net's protocol
        "vs_real_only_whole_tiles": tile_comparisons,
        "runs": results,
    }
    write_json(args.out / "results.json", record)
    write_json(args.out / "summary.json", summary)
    if tiles:
        write_json(args.out / "summary_whole_tiles.json", tiles)
    title = (
        "SMOKE TEST - " if args.quick else ""
    ) + f"{data_note}; {_steps_note(b)} x {b.batch_size} crops of {b.crop} px"
    plot_scores(summary, per_arm, title=title).savefig(args.out / "scores.png", dpi=120)
    test = splits["100"].test
    index = _figure_index(splits["100"])
    shown = {arm: args.work_dir / "runs" / arm / "seed0" / "figure_prediction.npy" for arm in per_arm}
    missing = [arm for arm, f in shown.items() if not f.is_file()]
    print_table(summary, comparisons)
    if tiles:
        print("\nOn whole test tiles:")
        print_table(tiles, tile_comparisons)
    print(f"wrote {args.out}/results.json, summary.json, scores.png")
    if missing:  # e.g. a work dir rebuilt from results.json: keep the figure that shows every arm
        print(f"predictions.png left as it is: no seed-0 prediction kept for {', '.join(missing)}")
        return
    arms = {arm: np.load(f) for arm, f in shown.items()}
    plot_predictions(test[index], arms, dict(splits["100"].type_names)).savefig(
        args.out / "predictions.png", dpi=110
    )
    print(f"wrote {args.out}/predictions.png")


def _steps_note(b: Budget) -> str:
    if b.steps_full == b.steps:
        return f"{b.steps} steps"
    return f"{b.steps_full} steps (100 % arms), {b.steps} (10 % arms)"


if __name__ == "__main__":
    raise SystemExit(main())
