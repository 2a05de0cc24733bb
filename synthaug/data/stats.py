"""Stain colour statistics per tile, for colour conditioning and for describing a dataset.

A tile cut into patches should get the statistics of the whole tile, not of whichever patch is
at hand, so :func:`group_colour_stats` pools the patches' per-patch
:func:`~synthaug.conditions.colour_stats` exactly (pixel-weighted means and variances).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from synthaug.conditions import ColourStats, colour_stats
from synthaug.data.record import Sample


def group_colour_stats(samples: Iterable[Sample]) -> dict[str, ColourStats]:
    """Nucleus and background RGB mean/std of each tile (``Sample.group``) over all its patches.

    Pooling: with per-patch pixel counts ``n_i``, means ``m_i`` and population stds ``s_i``, the
    tile's mean is ``sum(n_i m_i) / N`` and its variance ``sum(n_i (s_i^2 + m_i^2)) / N - mean^2``,
    which equals the statistics of the stitched tile.

    Args:
        samples: samples, any number of groups.

    Returns:
        ``{group: ColourStats}``; a group without nucleus (or background) pixels has 0 there.
    """
    # per group: pixel count, sum and sum of squares, for fg and bg, each (2, 3) after broadcasting
    moments: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        if not isinstance(sample, Sample):
            raise TypeError(f"`samples` must hold synthaug.data.Sample records, got {type(sample).__name__}.")
        stats = colour_stats(sample.image, sample.inst)
        n_fg = float(np.count_nonzero(sample.inst))
        counts = np.array([[n_fg], [sample.inst.size - n_fg]])
        means = np.stack([stats.fg_mean, stats.bg_mean]).astype(np.float64)
        squares = np.stack([stats.fg_std, stats.bg_std]).astype(np.float64) ** 2 + means**2
        acc = moments.setdefault(sample.group, [np.zeros((2, 1)), np.zeros((2, 3)), np.zeros((2, 3))])
        acc[0] += counts
        acc[1] += counts * means
        acc[2] += counts * squares
    result = {}
    for group, (count, total, total_sq) in moments.items():
        safe = np.maximum(count, 1.0)
        mean = total / safe
        std = np.sqrt(np.maximum(total_sq / safe - mean**2, 0.0))  # clip float round-off below 0
        result[group] = ColourStats(
            fg_mean=mean[0].astype(np.float32),
            fg_std=std[0].astype(np.float32),
            bg_mean=mean[1].astype(np.float32),
            bg_std=std[1].astype(np.float32),
        )
    return result
