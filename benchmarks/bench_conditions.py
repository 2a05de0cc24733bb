"""Benchmark the condition builders against the upstream way of computing the same arrays.

Prints median wall times (JIT compilation excluded by a warm-up call) of

1. HV maps of one 1000x1000 mask with ~900 nuclei: MONAI ``ComputeHoVerMaps``, our NumPy
   reference, our numba kernel;
2. HV maps of a batch of 64 masks of 256x256: MONAI per image, reference per image, numba
   ``compute_hv_maps_batch`` (``prange`` over images);
3. the full ``build_conditions`` stack (mask, boundary, HV, 4 type channels, colour) of a 256x256
   crop, against the same stack assembled from MONAI/scikit-image/NumPy parts;

with speed-up ratios against MONAI (or the upstream stack). Masks are non-overlapping random
ellipses on a jittered grid (deterministic for a seed), with shuffled, non-contiguous labels.

    python benchmarks/bench_conditions.py [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
from monai.transforms import ComputeHoVerMaps
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries
from tqdm import tqdm

from synthaug.conditions import (
    ConditionChannels,
    build_conditions,
    compute_hv_maps,
    compute_hv_maps_batch,
    type_map_from_instances,
)

CELL = 32  # grid pitch in px: 31x31 cells -> ~900 nuclei on 1000x1000, 8x8 on 256x256


def nuclei_mask(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[int, int]]:
    """Non-overlapping ellipses (semi-axes 4-12 px, any orientation), one per grid cell, ~6% skipped."""
    inst = np.zeros((size, size), np.int32)
    cells = [(r, c) for r in range(0, size - CELL + 1, CELL) for c in range(0, size - CELL + 1, CELL)]
    labels = rng.permutation(np.arange(1, 20 * len(cells) + 1))[: len(cells)]  # sparse, shuffled ids
    for (top, left), label in zip(cells, labels):
        if rng.random() < 0.06:
            continue
        a, b = rng.uniform(4, 12, size=2)
        centre = np.array([top, left]) + CELL / 2 + rng.uniform(-3, 3, size=2)
        rr, cc = ellipse(*centre, a, b, shape=inst.shape, rotation=rng.uniform(0, np.pi))
        inst[rr, cc] = label
    ids = np.unique(inst)[1:]
    return inst, {int(i): int(t) for i, t in zip(ids, rng.integers(1, 5, ids.size))}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: JIT compilation and caches are not what we measure
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def upstream_stack(inst: np.ndarray, inst_types: dict[int, int], colour: np.ndarray) -> np.ndarray:
    """The same 11 channels from the upstream parts (MONAI HV, scikit-image boundaries, NumPy)."""
    hv = ComputeHoVerMaps()(inst[None]).numpy()
    boundary = find_boundaries(inst, mode="inner")
    types = type_map_from_instances(inst, inst_types)
    fg = inst != 0
    return np.concatenate(
        [
            fg[None].astype(np.float32),
            boundary[None].astype(np.float32),
            hv,
            (types[None] == np.arange(1, 5)[:, None, None]).astype(np.float32),
            np.where(fg[None], colour[:3, None, None], colour[3:, None, None]).astype(np.float32),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    big, _ = nuclei_mask(1000, rng)
    batch = np.stack([nuclei_mask(256, rng)[0] for _ in range(64)])
    crop, crop_types = nuclei_mask(256, rng)
    colour = np.array([0.35, 0.2, 0.5, 0.9, 0.75, 0.85])
    monai = ComputeHoVerMaps()

    # Exactness first: a benchmark of a wrong result means nothing.
    assert np.array_equal(compute_hv_maps(big), monai(big[None]).numpy())
    assert np.array_equal(
        compute_hv_maps_batch(batch[:4]), np.stack([monai(m[None]).numpy() for m in batch[:4]])
    )
    assert np.array_equal(
        build_conditions(crop, inst_types=crop_types, colour=colour), upstream_stack(crop, crop_types, colour)
    )

    slow = max(3, args.repeats // 2)  # the upstream paths take seconds per call
    fast = 20 * args.repeats  # sub-millisecond calls need more samples for a stable median
    cases = {
        "1000x1000": [
            ("MONAI ComputeHoVerMaps", slow, lambda: monai(big[None])),
            ("synthaug reference (NumPy)", args.repeats, lambda: compute_hv_maps(big, backend="reference")),
            ("synthaug numba", args.repeats, lambda: compute_hv_maps(big)),
        ],
        "64 x 256x256": [
            ("MONAI ComputeHoVerMaps", slow, lambda: [monai(m[None]) for m in batch]),
            ("synthaug reference (NumPy)", slow, lambda: compute_hv_maps_batch(batch, backend="reference")),
            ("synthaug numba (prange)", args.repeats, lambda: compute_hv_maps_batch(batch)),
        ],
        "build_conditions 256x256": [
            (
                "upstream parts (MONAI+skimage+NumPy)",
                args.repeats,
                lambda: upstream_stack(crop, crop_types, colour),
            ),
            (
                "synthaug build_conditions",
                fast,
                lambda: build_conditions(crop, inst_types=crop_types, colour=colour),
            ),
        ],
    }
    results = []  # (case, implementation, seconds, speed-up against the case's first row)
    with tqdm(total=sum(len(rows) for rows in cases.values()), desc="benchmarking", leave=False) as progress:
        for case, rows in cases.items():
            baseline = None
            for name, repeats, fn in rows:
                seconds = median_seconds(fn, repeats)
                baseline = seconds if baseline is None else baseline
                results.append((case, name, seconds, baseline / seconds))
                progress.update()

    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numba threads {numba.get_num_threads()}; 1000x1000 mask: {len(np.unique(big)) - 1} nuclei; "
        f"256x256 crop: {len(crop_types)} nuclei, {ConditionChannels().num_channels} channels"
    )
    print(f"| {'case':<26} | {'implementation':<38} | {'median ms':>10} | {'speed-up':>9} |")
    print(f"|{'-' * 28}|{'-' * 40}|{'-' * 12}|{'-' * 11}|")
    for case, name, seconds, ratio in results:
        print(f"| {case:<26} | {name:<38} | {seconds * 1e3:>10.3f} | {ratio:>8.1f}x |")


if __name__ == "__main__":
    main()
