"""Helpers shared by the proof benchmarks: provenance, JSON, toy caches, statistics over seeds.

Benchmarks are scripts, not library code: they may seed globally (``monai.utils.set_determinism``)
and print. Everything they measure goes through ``synthaug.metrics``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]


def device_description(device: str) -> str:
    """A line naming the hardware, e.g. ``"2-core x86_64 CPU"`` or the CUDA device name."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    import os

    return f"{os.cpu_count()}-core {platform.machine()} CPU ({torch.get_num_threads()} torch thread(s))"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: a class absent from every image is written as null.
    path.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False))
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----------------------------------------------------------------------------------------- toy caches
def build_toy_cache(url: str, *, num_samples: int, size: int, seed: int = 0, num_types: int = 4):
    """A cache of procedural layouts painted by the toy renderer: a smoke-test stand-in for MSDM output."""
    from synthaug.data import generate_layout, render_toy_tile
    from synthaug.sampling.cache import SyntheticCache

    cache = SyntheticCache.create(
        url,
        height=size,
        width=size,
        num_types=num_types,
        attrs={"source": "toy layouts + render_toy_tile (smoke test, not MSDM)"},
    )
    for i in tqdm(range(num_samples), desc="toy cache", leave=False):
        layout = generate_layout(size, size, seed=seed + i)
        image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=seed + i)
        cache.append(
            image=image[None],
            inst=layout.inst[None],
            type=layout.types[None],
            meta=[{"source": "toy", "seed": seed + i}],
        )
    return cache


# ----------------------------------------------------------------------------------------- seed statistics
def paired_comparison(arm: Sequence[float], base: Sequence[float]) -> dict[str, float]:
    """Mean/std of the per-seed difference and paired tests (t-test, Wilcoxon) over seeds."""
    from scipy.stats import ttest_rel, wilcoxon

    a, b = np.asarray(arm, float), np.asarray(base, float)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = a[ok] - b[ok]
    out = {
        "diff_mean": float(np.mean(diff)) if len(diff) else float("nan"),
        "diff_std": float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"),
        "t_test_p": float("nan"),
        "wilcoxon_p": float("nan"),
        "num_pairs": int(len(diff)),
    }
    if len(diff) > 1 and np.any(diff != 0):
        out["t_test_p"] = float(ttest_rel(a[ok], b[ok]).pvalue)
        out["wilcoxon_p"] = float(wilcoxon(a[ok], b[ok]).pvalue)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1) of the finite values; the std of fewer than two is NaN (null in
    JSON), not 0: one seed shows no spread, it does not show that there is none."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def calibration_tiles(train: list, most: int = 32) -> list:
    """An even spread of at most ``most`` real training patches (never test ones)."""
    return list(train[:: max(1, -(-len(train) // most))])[:most]
