"""Throughput of a MONAI loader alone and with SyntheticAugment(prob=0.5).

    python benchmarks/bench_augment.py                       # CoNSeP from ../shared/data/consep
    python benchmarks/bench_augment.py --data none           # toy data only

Two real pipelines, each a CacheDataset of the training patches in memory batched by
``monai.data.DataLoader`` with worker processes: a minimal one (random crop + two flips) and a
HoVer-Net-style one (+ rot90, contrast, blur and HV targets). The synthetic variants add
``SyntheticAugment`` in front of the crop (and, in one row, after it: it then converts only the crop
window, cut at random from the cache tile, instead of a whole tile). Without ``--cache``, the
cache is the real patches written into a ``SyntheticCache`` (same tile size, dtypes and compression
as sampled pairs, so the same reading cost).

Two measures. Samples/s of the DataLoader (wall clock, what training sees): variants run
interleaved, ``--repeats`` times each, medians reported, with the real-only loader's run-to-run
spread as its noise floor. CPU ms per sample in one process on one torch thread, as in a DataLoader
worker (all threads of the process counted, read-ahead included), measured in paired rounds (the
same items through every variant in turn) so that the overhead's confidence interval is tight even
on a shared machine, where wall-clock rates also favour the variant with more threads.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianSmoothd,
    RandRotate90d,
    RandSpatialCropd,
)
from monai.utils import set_determinism
from torch.utils.data import RandomSampler
from tqdm import tqdm

from synthaug.augment import HVMapsd, SyntheticAugment
from synthaug.sampling.cache import SyntheticCache

KEYS = ("image", "label", "inst")
PROB = 0.5
CHUNK = 16  # items per variant per paired round of the CPU measure
MINIMAL = "real only (crop + flips)"
HOVERNET = "HoVer-Net-style real only (+ rot90, contrast, blur, HV targets)"
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "consep"


def load_real(data: str, limit: int) -> tuple[list, str]:
    if data != "none" and Path(data).is_dir():
        from synthaug.data.readers import open_dataset

        return open_dataset(data).load("train")[:limit], f"CoNSeP train ({Path(data).resolve()})"
    from synthaug.data.toy import make_toy_samples

    return make_toy_samples(min(limit, 64), 256, 256, seed=0, progress=True), "toy 256x256 tiles"


def cache_from(samples: list, url: str) -> SyntheticCache:
    h, w = samples[0].shape
    cache = SyntheticCache.create(url, height=h, width=w, num_types=4)
    cache.append_samples(samples)
    return SyntheticCache.open(url)


def samples_per_second(dataset: CacheDataset, args: argparse.Namespace) -> float:
    """Wall-clock throughput of a MONAI DataLoader with worker processes."""
    # One iterator over `epochs` passes: workers start once, and are joined before the next variant.
    sampler = RandomSampler(dataset, num_samples=args.epochs * len(dataset))
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    seen, start = 0, time.perf_counter()
    for batch in iterator:
        seen += len(batch["image"])
    if seen == 0:
        raise SystemExit("nothing left to time after the first batch: raise --epochs or --limit.")
    rate = seen / (time.perf_counter() - start)
    del iterator, loader
    return rate


def cpu_ms_per_sample(
    datasets: dict[str, CacheDataset], epochs: int, chunk: int = 32
) -> dict[str, list[float]]:
    """CPU ms per item of each dataset in this process (all its threads, read-ahead included).

    Paired and interleaved: every round runs the same ``chunk`` indices through each variant in
    turn (rotating the order), so a drift of the machine's speed hits all variants alike. Returns
    each variant's ms/item per round; ratios of their sums are the overheads. CPU time, unlike
    wall-clock rates, does not depend on how busy the machine is: on a shared machine a variant
    with more threads (the read-ahead) gets a larger share of the cores and looks faster.
    One torch thread, as torch gives every DataLoader worker: with more, torch's idle threads spin
    on the flips' small kernels and add CPU time that no worker spends.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    names = list(datasets)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    n = len(datasets[names[0]])
    order = np.random.default_rng(0).permutation(np.tile(np.arange(n), epochs))
    try:
        for r, start in enumerate(tqdm(range(0, len(order), chunk), desc="CPU time, paired rounds")):
            indices = order[start:start + chunk]
            for name in names[r % len(names):] + names[: r % len(names)]:
                began = time.process_time()
                for i in indices:
                    datasets[name][int(i)]
                per_round[name].append(1e3 * (time.process_time() - began) / len(indices))
    finally:
        torch.set_num_threads(threads)
    return per_round


def ratio_interval(variant: list[float], base: list[float], seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval (over paired rounds) of ``sum(variant) / sum(base)``."""
    v, b = np.asarray(variant), np.asarray(base)
    rounds = np.random.default_rng(seed).integers(0, len(v), (2000, len(v)))
    ratios = v[rounds].sum(1) / b[rounds].sum(1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def spread(values: list[float]) -> float:
    """Half the min-max range, in % of the median: the run-to-run noise of one measure."""
    return 50 * (max(values) - min(values)) / statistics.median(values)


def build_variants(cache: SyntheticCache, crop_size: int) -> dict[str, Compose]:
    """The loaders compared: two real pipelines, each alone and with SyntheticAugment."""
    crop = RandSpatialCropd(KEYS, roi_size=(crop_size, crop_size), random_size=False)
    flips = [RandFlipd(KEYS, prob=0.5, spatial_axis=0), RandFlipd(KEYS, prob=0.5, spatial_axis=1)]
    # What HoVer-Net training adds after the geometry: intensity jitter, blur, and the HV targets
    # recomputed from the augmented instances.
    hovernet = [crop, *flips, RandRotate90d(KEYS, prob=0.5),
                RandAdjustContrastd("image", prob=0.5, gamma=(0.8, 1.25)),
                RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
                HVMapsd("inst")]
    return {
        MINIMAL: Compose([crop, *flips]),
        f"+ SyntheticAugment(prob={PROB}) (default: preloaded)": Compose(
            [SyntheticAugment(cache, prob=PROB), crop, *flips]
        ),
        f"+ SyntheticAugment(prob={PROB}) after the crop": Compose(
            [crop, SyntheticAugment(cache, prob=PROB), *flips]
        ),
        f"+ SyntheticAugment(prob={PROB}, preload=False) (zarr reads)": Compose(
            [SyntheticAugment(cache, prob=PROB, preload=False), crop, *flips]
        ),
        f"+ SyntheticAugment(prob={PROB}, mode='paste')": Compose(
            [SyntheticAugment(cache, prob=PROB, mode="paste"), crop, *flips]
        ),
        HOVERNET: Compose(hovernet),
        f"HoVer-Net-style + SyntheticAugment(prob={PROB})": Compose(
            [SyntheticAugment(cache, prob=PROB), *hovernet]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CoNSeP folder, or 'none' for toy data")
    parser.add_argument("--cache", help="a SyntheticCache path/URL (default: the real patches re-written)")
    parser.add_argument("--limit", type=int, default=256, help="real patches to load")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7, help="DataLoader runs per variant")
    parser.add_argument("--cpu-epochs", type=int, default=10, help="passes over the data for the CPU measure")
    args = parser.parse_args()
    set_determinism(0)

    samples, source = load_real(args.data, args.limit)
    with tempfile.TemporaryDirectory() as workdir:
        url = args.cache or f"{workdir}/cache.zarr"
        cache = SyntheticCache.open(url) if args.cache else cache_from(samples, url)
        variants = build_variants(cache, args.crop)
        items = [s.to_dict() for s in samples]
        datasets = {name: CacheDataset(items, transform=tf, progress=False) for name, tf in variants.items()}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        samples_per_second(datasets[MINIMAL], args)  # warm-up: caches, allocator
        order = list(datasets)
        for repeat in tqdm(range(args.repeats), desc="DataLoader runs"):  # interleaved and rotated:
            for name in order[repeat % len(order):] + order[: repeat % len(order)]:  # drifts hit all alike
                rates[name].append(samples_per_second(datasets[name], args))
        cpu = cpu_ms_per_sample(datasets, args.cpu_epochs, CHUNK)

    size = "x".join(map(str, samples[0].shape))
    print(f"\n{source}: {len(samples)} patches {size}, crop {args.crop}, batch {args.batch_size}, "
          f"{args.num_workers} workers, DataLoader: median of {args.repeats} runs x {args.epochs} epochs\n")
    print("| loader | samples/s (DataLoader) | ratio vs real only | CPU ms/sample | CPU overhead (95% CI) "
          "| CPU ms per synthetic draw |")
    print("|---|---|---|---|---|---|")
    base = MINIMAL
    for name in variants:  # each row is compared with the real-only row of its pipeline, above it
        base = name if name in (MINIMAL, HOVERNET) else base
        base_rate, base_cpu = statistics.median(rates[base]), float(np.mean(cpu[base]))
        rate, ms = statistics.median(rates[name]), float(np.mean(cpu[name]))
        if name == base:
            overhead, per_draw = "", ""
        else:
            low, high = (100 * (r - 1) for r in ratio_interval(cpu[name], cpu[base]))
            overhead = f"{100 * (ms / base_cpu - 1):+.1f}% ({low:+.1f} to {high:+.1f})"
            per_draw = f"{(ms - base_cpu) / PROB:.2f}"  # a draw happens in PROB of the samples
        print(f"| {name} | {rate:.0f} | {rate / base_rate:.3f} | {ms:.2f} | {overhead} | {per_draw} |")
    noise = ", ".join(f"{spread(rates[b]):.1f}%" for b in (MINIMAL, HOVERNET))
    print(f"\nDataLoader noise floor (real-only rows, half the min-max range of {args.repeats} runs): "
          f"+/-{noise}. CPU columns: {len(cpu[MINIMAL])} paired rounds of {CHUNK} items "
          "(CI: bootstrap over rounds).")


if __name__ == "__main__":
    main()
