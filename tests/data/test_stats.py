"""Per-tile colour statistics pooled over patches equal those of the whole tile."""

from __future__ import annotations

import numpy as np

from synthaug.conditions import colour_stats
from synthaug.data import Sample, group_colour_stats, tile_sample
from tests.data.toys import toy_tile


def test_pooled_patch_stats_equal_whole_tile_stats():
    image, inst, table = toy_tile(7, size=64, n=15)
    tile = Sample(
        image=image,
        inst=inst,
        types=(inst > 0).astype(np.uint8),
        inst_types=dict.fromkeys(table, 1),
        name="t",
        group="t",
    )
    patches = tile_sample(tile, 32)  # no overlap: the patches partition the tile
    pooled = group_colour_stats(patches)["t"]
    whole = colour_stats(image, inst)
    for field in ("fg_mean", "fg_std", "bg_mean", "bg_std"):
        np.testing.assert_allclose(getattr(pooled, field), getattr(whole, field), atol=1e-5)


def test_groups_are_kept_apart():
    a, b = toy_tile(1), toy_tile(2)
    samples = [
        Sample(
            image=img,
            inst=inst,
            types=(inst > 0).astype(np.uint8),
            inst_types=dict.fromkeys(t, 1),
            name=n,
            group=n,
        )
        for n, (img, inst, t) in zip("ab", (a, b))
    ]
    stats = group_colour_stats(samples)
    assert set(stats) == {"a", "b"}
    np.testing.assert_allclose(stats["b"].bg_mean, colour_stats(b[0], b[1]).bg_mean, atol=1e-6)
