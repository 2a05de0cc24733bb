"""Does synthesis help segmentation? Dice / PQ with vs without synthetic pairs, on held-out real data.

Arms (same network, seed, step budget and geometric augmentations in every arm):

  real                      the real training split only
  real + synth              plus cached synthetic pairs through ``SyntheticAugment`` (prob ``--prob``)
  real + synth (targeted)   the draws weighted towards the rare class (epithelial = columnar)
                            via ``target_types``; from ``--targeted-cache`` when given
  real f%  / real f% + synth  the training split cut to f = 10/25/50 % of its tiles
                            (``scarcity_scenario(keep_fraction=f)``, the same cut for every seed)

Each arm runs ``--seeds`` times; the report gives mean ± std over seeds of Dice per class,
foreground Dice, AJI, bPQ, mPQ and PQ per class on the test split, and each synthetic arm's
difference to its real-only twin with paired tests over seeds (t-test and Wilcoxon; with 3 seeds
Wilcoxon cannot go below p = 0.25). Instances are the connected components of the predicted
foreground (touching nuclei merge alike in every arm). Writes ``results.json`` and ``dice.png``.

Synthetic pairs: ``--cache STORE`` (a finished ``SyntheticCache``), or ``--model DIR`` to sample
caches from a trained MSDM using *training* masks only (the scarcity arms sample from the kept
tiles' masks only). ``--quick`` is a CPU smoke test on a few 64-px crops with a cache of toy
layouts painted by ``render_toy_tile`` (not MSDM output): its numbers say the path works, nothing
about synthesis.

    python benchmarks/dice_with_synthesis.py --quick --out /tmp/dice_quick
    python benchmarks/dice_with_synthesis.py --model runs/msdm --out benchmarks/results/dice  # GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    build_toy_cache,
    device_description,
    evaluate,
    git_commit,
    mean_std,
    paired_comparison,
    write_json,
)

from synthaug.demo.segmenter import ARCHS, train_segmenter  # noqa: E402

RARE = "epithelial"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cache", help="a finished SyntheticCache (path or URL)")
    source.add_argument("--model", type=Path, help="a train_msdm output folder to sample caches from")
    parser.add_argument("--targeted-cache", help="a cache sampled with --target-type epithelial (arm c)")
    parser.add_argument(
        "--num-synthetic",
        type=int,
        default=None,
        help="pairs per cache sampled with --model (quick: toy pairs, default 64)",
    )
    parser.add_argument("--inference-steps", type=int, default=25, help="sampler steps with --model")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dice_with_synthesis")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--fractions",
        default=None,
        help="training shares of the scarcity arms (default 0.1,0.25,0.5; quick 0.25)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's; quick 1)"
    )
    parser.add_argument(
        "--arch", choices=ARCHS, default=None, help="default: smp-unet (monai-basicunet in --quick)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="optimiser steps per run (default 3000; quick 20)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 (quick 4)")
    parser.add_argument("--prob", type=float, default=0.5, help="probability a training draw is synthetic")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test on a few crops with a toy cache")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for a paired test (3 or more recommended).")
    if not args.quick and args.cache is None and args.model is None:
        parser.error("the full benchmark needs --cache STORE or --model DIR (or use --quick).")
    args.arch = args.arch or ("monai-basicunet" if args.quick else "smp-unet")
    args.steps = args.steps or (20 if args.quick else 3000)
    args.batch_size = args.batch_size or (4 if args.quick else 16)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.num_synthetic = args.num_synthetic or (64 if args.quick else 512)
    args.fractions = [
        float(f) for f in (args.fractions or ("0.25" if args.quick else "0.1,0.25,0.5")).split(",")
    ]
    # On a small shared CPU, OpenMP threads contending with other processes make every step ~10x
    # slower than one thread (measured on the 2-core CI box); the quick mode therefore uses one.
    args.threads = args.threads or (1 if args.quick else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def load_split(args: argparse.Namespace):
    """CoNSeP's own train/test split; in --quick a few 64-px crops of a few tiles (toy data if absent)."""
    from synthaug.data import BenchmarkSplit, open_dataset, tile_samples

    if not args.data.is_dir():
        if not args.quick:
            raise SystemExit(f"no dataset at {args.data}; pass --data (the full benchmark needs real data).")
        return _toy_split(), "toy layouts (no real data found)"
    reader = open_dataset(args.data)
    split = BenchmarkSplit.from_reader(reader, train="train", test="test")
    if not args.quick:
        return split, f"{reader.name} at {args.data}"
    # One 256-px patch per tile (8 train tiles, 3 test tiles), cut into 64-px crops; tiles stay groups.
    train, test = (
        tile_samples(_one_per_tile(split.train, 8), 64),
        tile_samples(_one_per_tile(split.test, 3), 64),
    )
    quick = BenchmarkSplit(
        train=train, test=test[::3], type_names=split.type_names, provenance=split.provenance
    )
    return quick, f"{reader.name} at {args.data}: 64-px crops of 8 train / 3 test tiles"


def _one_per_tile(samples, num_tiles: int) -> list:
    tiles = sorted({s.group for s in samples})[:num_tiles]
    return [next(s for s in samples if s.group == tile) for tile in tiles]


def _toy_split():
    from synthaug.data import generate_layout, render_toy_tile, split_by_group
    from synthaug.data.record import Sample

    samples = []
    for i in range(48):
        layout = generate_layout(64, 64, seed=1000 + i)
        image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=1000 + i)
        samples.append(
            Sample(image, layout.inst, layout.types, layout.inst_types, name=f"toy{i}", group=f"g{i // 4}")
        )
    names = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    return split_by_group(samples, test_fraction=0.25, seed=0, type_names=names)


def sample_cache(args, train, url: str, *, targeted: bool) -> str:
    """Sample ``--num-synthetic`` pairs from ``--model`` into ``url``, masks from ``train`` only."""
    from synthaug.sampling.generate import generate_to_cache
    from synthaug.sampling.mask_sources import RealMaskSource
    from synthaug.sampling.pipeline import load_pipeline
    from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy

    pipeline = load_pipeline(args.model, device=args.device)
    # Sample at the model's training tile size (masks cropped to it when the patches are larger).
    tile = min(pipeline.model.config.sample_size, *train[0].shape)
    source = RealMaskSource(list(train), edits=("dihedral", "elastic"), size=(tile, tile), seed=0)
    target = None
    if targeted:
        target = {"type": RARE, "share": 0.5, "by": "instances"}
        source = TargetedMaskSource(source, TargetingPolicy(RARE, 0.5), seed=0)
    generate_to_cache(
        pipeline,
        source,
        url,
        num_samples=args.num_synthetic,
        target=target,
        resume=True,
        num_inference_steps=args.inference_steps,
    )
    return url


def main(argv: list[str] | None = None) -> int:
    from synthaug.augment import SyntheticAugment
    from synthaug.data import scarcity_scenario

    args = parse_args(argv)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    split, data_note = load_split(args)
    names = dict(split.type_names)
    rare_id = next(k for k, v in names.items() if v == RARE)
    size = split.train[0].shape[0]

    if args.quick and args.cache is None and args.model is None:
        url = f"memory://dice-quick-{time.time_ns()}"
        build_toy_cache(url, num_samples=args.num_synthetic, size=size, seed=0)
        caches = {"all": url, "targeted": url}
        cache_note = "toy layouts + render_toy_tile (SMOKE TEST: not MSDM output)"
    elif args.model is not None:
        caches = {
            "all": sample_cache(args, split.train, str(args.out / "cache_train.zarr"), targeted=False),
            "targeted": sample_cache(args, split.train, str(args.out / "cache_targeted.zarr"), targeted=True),
        }
        cache_note = f"sampled from {args.model} with training masks only"
    else:
        caches = {"all": args.cache, "targeted": args.targeted_cache or args.cache}
        cache_note = f"{args.cache} (mask provenance as recorded in the cache)"

    # SyntheticAugment swaps a real draw for a cache tile of the same size: with a cache of smaller
    # tiles, every arm trains on real crops of the cache's size (nuclei keep their scale; the
    # network is fully convolutional, so testing stays on whole patches).
    from synthaug.data import tile_samples
    from synthaug.sampling.cache import SyntheticCache

    cache_size = SyntheticCache.open(caches["all"]).height

    def fit(samples) -> list:
        return tile_samples(samples, cache_size) if cache_size < size else list(samples)

    def synth(url: str, targeted: bool) -> SyntheticAugment:
        return SyntheticAugment(
            url,
            prob=args.prob,
            target_types=[rare_id] if targeted else None,
            num_types=max(names),
            read_ahead=0,
        )

    arms: list[tuple[str, list, SyntheticAugment | None, str | None]] = [
        ("real", fit(split.train), None, None),
        ("real + synth", fit(split.train), synth(caches["all"], False), "real"),
        ("real + synth (targeted)", fit(split.train), synth(caches["targeted"], True), "real"),
    ]
    for f in args.fractions:
        scarce = scarcity_scenario(split, keep_fraction=f, unit="group", seed=0)
        url = caches["all"]
        if args.model is not None:  # the scarce arm's synthesis sees only the kept tiles' masks
            url = sample_cache(
                args, scarce.train, str(args.out / f"cache_keep{int(f * 100)}.zarr"), targeted=False
            )
        label = f"real {int(f * 100)}%"
        arms += [
            (label, fit(scarce.train), None, None),
            (f"{label} + synth", fit(scarce.train), synth(url, False), label),
        ]

    print(f"data: {data_note} | train {len(split.train)} / test {len(split.test)} samples of {size}px")
    print(f"synthetic: {cache_note} | training tiles {min(cache_size, size)}px")
    per_seed: dict[str, list[dict]] = {name: [] for name, *_ in arms}
    synthetic_share: dict[str, list[float]] = {name: [] for name, *_ in arms}
    for seed in range(args.seeds):
        for name, train, augment, _ in arms:
            run = train_segmenter(
                train,
                split.test,
                arch=args.arch,
                num_classes=max(names) + 1,
                steps=args.steps,
                batch_size=args.batch_size,
                seed=seed,
                device=args.device,
                synthetic=augment,
                desc=f"{name} s{seed}",
            )
            per_seed[name].append(evaluate(run.predictions, split.test, names))
            synthetic_share[name].append(run.synthetic_fraction)

    metrics = list(per_seed["real"][0])
    summary, comparisons = {}, {}
    for name, _, _, base in arms:
        summary[name] = {m: mean_std([row[m] for row in per_seed[name]]) for m in metrics}
        if base is not None:
            comparisons[name] = {
                "baseline": base,
                **{
                    m: paired_comparison([r[m] for r in per_seed[name]], [r[m] for r in per_seed[base]])
                    for m in metrics
                },
            }
    smoke = args.quick
    record = {
        "benchmark": "dice_with_synthesis",
        "smoke_test": smoke,
        "note": (
            f"SMOKE TEST on a few crops ({cache_note}): the numbers show the path runs, "
            "not whether synthesis helps."
            if smoke
            else "full run"
        ),
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "device": device_description(args.device),
        "data": data_note,
        "synthetic": cache_note,
        "config": {
            "arch": args.arch,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
            "seeds": args.seeds,
            "train_tile_px": min(cache_size, size),
            "prob": args.prob,
            "fractions": args.fractions,
            "rare_type": RARE,
            "instances": "4-connected components of the predicted foreground",
        },
        "num_train": {name: len(train) for name, train, _, _ in arms},
        "num_test": len(split.test),
        "synthetic_share_of_draws": {k: float(np.mean(v)) for k, v in synthetic_share.items()},
        "summary_mean_std": summary,
        "vs_real_only": comparisons,
        "per_seed": per_seed,
        "seconds": time.time() - started,
    }
    write_json(args.out / "results.json", record)
    plot(
        args.out / "dice.png",
        summary,
        names,
        title=("SMOKE TEST - " if smoke else "") + data_note,
    )
    print_table(summary, comparisons, names)
    if smoke:
        print(
            f"\nSMOKE TEST on a few crops ({cache_note}): these numbers say nothing about "
            "whether synthesis helps."
        )
    print(f"wrote {args.out / 'results.json'} and {args.out / 'dice.png'} in {record['seconds']:.0f} s")
    return 0


def print_table(summary, comparisons, names) -> None:
    columns = [f"Dice {names[k]}" for k in sorted(names)] + ["Dice nuclei (foreground)", "mPQ", "bPQ", "AJI"]
    header = "| arm | " + " | ".join(c.replace("Dice nuclei (foreground)", "Dice fg") for c in columns) + " |"
    print("\n" + header + "\n|" + "---|" * (len(columns) + 1))
    for arm, row in summary.items():
        cells = []
        for c in columns:
            mean, std = row[c]
            cell = f"{mean:.3f} ± {std:.3f}"
            if arm in comparisons:
                cmp = comparisons[arm][c]
                cell += f" ({cmp['diff_mean']:+.3f}, p={cmp['t_test_p']:.2f})"
            cells.append(cell)
        print(f"| {arm} | " + " | ".join(cells) + " |")
    print("(difference vs the arm's real-only twin, paired t-test p over seeds)")


def plot(path: Path, summary, names, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [f"Dice {names[k]}" for k in sorted(names)] + ["Dice nuclei (foreground)", "mPQ", "bPQ"]
    arms = list(summary)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(metrics) * len(arms) / 4), 4.5))
    width = 0.8 / len(arms)
    x = np.arange(len(metrics))
    colours = plt.get_cmap("tab10")
    for i, arm in enumerate(arms):
        means = [summary[arm][m][0] for m in metrics]
        stds = [summary[arm][m][1] for m in metrics]
        ax.bar(
            x + (i - (len(arms) - 1) / 2) * width,
            np.nan_to_num(means),
            width,
            yerr=np.nan_to_num(stds),
            label=arm,
            color=colours(i % 10),
            capsize=2,
        )
    ax.set_xticks(x, [m.replace("Dice nuclei (foreground)", "Dice fg") for m in metrics], rotation=20)
    ax.set_ylabel("mean ± std over seeds")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
