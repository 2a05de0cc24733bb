"""Throughput of a MONAI loader alone and with SyntheticAugment(prob=0.5).

    python benchmarks/bench_augment.py                       # CoNSeP from ../shared/data/consep
    python benchmarks/bench_augment.py --data none           # toy data only

The real pipeline is a typical one: a CacheDataset of the training patches in memory, then random
crop + two flips, batched by ``monai.data.DataLoader`` with worker processes. The synthetic variant
adds ``SyntheticAugment`` in front of the crop. Without ``--cache``, the cache is the real patches
written into a ``SyntheticCache`` (same tile size, dtypes and compression as sampled pairs, so the same
reading cost). Variants run interleaved, ``--repeats`` times each; medians are reported.

Two measures: samples/s of the DataLoader (wall clock, what training sees), and CPU ms per sample
in one process (all threads), whose ratio is the overhead: on a shared, busy machine wall-clock rates
favour the variant with more threads, which gets a larger share of the cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, RandFlipd, RandSpatialCropd
from monai.utils import set_determinism
from torch.utils.data import RandomSampler
from tqdm import tqdm

from synthaug.augment import SyntheticAugment
from synthaug.sampling.cache import SyntheticCache

KEYS = ("image", "label", "inst")
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
    rate = seen / (time.perf_counter() - start)
    del iterator, loader
    return rate


def cpu_ms_per_sample(dataset: CacheDataset) -> float:
    """CPU time per item in this process (all its threads, read-ahead included).

    Unlike wall-clock rates this does not depend on how busy the machine is: on a shared machine a
    variant with more threads (the read-ahead) gets a larger share of the cores and looks faster.
    """
    start = time.process_time()
    for i in range(len(dataset)):
        dataset[i]
    return 1e3 * (time.process_time() - start) / len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CoNSeP folder, or 'none' for toy data")
    parser.add_argument("--cache", help="a SyntheticCache path/URL (default: the real patches re-written)")
    parser.add_argument("--limit", type=int, default=256, help="real patches to load")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    set_determinism(0)

    samples, source = load_real(args.data, args.limit)
    with tempfile.TemporaryDirectory() as workdir:
        url = args.cache or f"{workdir}/cache.zarr"
        cache = SyntheticCache.open(url) if args.cache else cache_from(samples, url)
        spatial = [RandSpatialCropd(KEYS, roi_size=(args.crop, args.crop), random_size=False),
                   RandFlipd(KEYS, prob=0.5, spatial_axis=0), RandFlipd(KEYS, prob=0.5, spatial_axis=1)]
        items = [s.to_dict() for s in samples]
        variants = {
            "real only (crop + flips)": Compose(spatial),
            "+ SyntheticAugment(prob=0.5) (default: preloaded)": Compose(
                [SyntheticAugment(cache, prob=0.5), *spatial]
            ),
            "+ SyntheticAugment(prob=0.5, preload=False) (zarr reads)": Compose(
                [SyntheticAugment(cache, prob=0.5, preload=False), *spatial]
            ),
            "+ SyntheticAugment(prob=0.5, mode='paste')": Compose(
                [SyntheticAugment(cache, prob=0.5, mode="paste"), *spatial]
            ),
        }
        datasets = {name: CacheDataset(items, transform=tf, progress=False) for name, tf in variants.items()}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        samples_per_second(datasets["real only (crop + flips)"], args)  # warm-up: caches, allocator
        order = list(datasets)
        for repeat in tqdm(range(args.repeats), desc="repeats"):  # interleaved and rotated: drifting
            for name in order[repeat % len(order):] + order[: repeat % len(order)]:  # load hits all alike
                rates[name].append(samples_per_second(datasets[name], args))
                cpu[name].append(cpu_ms_per_sample(datasets[name]))

    size = "x".join(map(str, samples[0].shape))
    print(f"\n{source}: {len(samples)} patches {size}, crop {args.crop}, batch {args.batch_size}, "
          f"{args.num_workers} workers, median of {args.repeats} runs x {args.epochs} epochs\n")
    print("| loader | samples/s (DataLoader) | ratio vs real only | CPU ms/sample | CPU overhead |")
    print("|---|---|---|---|---|")
    base_rate = statistics.median(rates["real only (crop + flips)"])
    base_cpu = statistics.median(cpu["real only (crop + flips)"])
    for name in variants:
        rate, ms = statistics.median(rates[name]), statistics.median(cpu[name])
        overhead = 100 * (ms / base_cpu - 1)
        print(f"| {name} | {rate:.0f} | {rate / base_rate:.3f} | {ms:.2f} | {overhead:+.1f}% |")


if __name__ == "__main__":
    main()
