"""Tiling with overlap: coverage, edge alignment, consistent crops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthaug.data import Sample, crop_sample, tile_positions, tile_sample
from tests.data.toys import toy_tile


def toy_sample(seed=0, size=48, name="tile"):
    image, inst, table = toy_tile(seed, size=size, n=12)
    lut = np.zeros(inst.max() + 1, np.uint8)
    lut[list(table)] = list(table.values())
    return Sample(image=image, inst=inst, types=lut[inst], inst_types=table, name=name, group="slide-1")


def test_positions_step_by_patch_minus_overlap_and_end_at_the_edge():
    assert tile_positions(100, 64, 32, overlap=0) == [(y, x) for y in (0, 32, 64, 68) for x in (0, 32)]
    assert tile_positions(64, 64, 32, overlap=16) == [(y, x) for y in (0, 16, 32) for x in (0, 16, 32)]


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(8, 90),
    width=st.integers(8, 90),
    patch=st.integers(4, 40),
    overlap_share=st.floats(0, 0.9),
)
def test_patches_cover_every_pixel(height, width, patch, overlap_share):
    patch = min(patch, height, width)
    overlap = int(overlap_share * patch)
    covered = np.zeros((height, width), bool)
    for y, x in tile_positions(height, width, patch, overlap=overlap):
        assert 0 <= y <= height - patch and 0 <= x <= width - patch
        covered[y : y + patch, x : x + patch] = True
    assert covered.all()


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="larger than the 10x10 tile"):
        tile_positions(10, 10, 16)
    with pytest.raises(ValueError, match="overlap"):
        tile_positions(64, 64, 16, overlap=16)
    with pytest.raises(ValueError, match="patch_size"):
        tile_positions(64, 64, 0)
    with pytest.raises(ValueError, match="does not fit inside"):
        crop_sample(toy_sample(), 40, 0, 16, 16)


def test_tiles_keep_group_and_stay_consistent():
    sample = toy_sample()
    patches = tile_sample(sample, 24, overlap=8)
    assert len(patches) == 9
    assert all(p.group == "slide-1" for p in patches)
    assert len({p.name for p in patches}) == 9
    for p in patches:
        ids = np.unique(p.inst[p.inst > 0])
        assert ids.tolist() == list(range(1, ids.size + 1)) == sorted(p.inst_types)  # compact, all typed
        for k, t in p.inst_types.items():
            assert (p.types[p.inst == k] == t).all()


def test_crop_matches_the_source_pixels():
    sample = toy_sample(seed=3)
    crop = crop_sample(sample, 10, 5, 20, 30)
    assert np.array_equal(crop.image, sample.image[10:30, 5:35])
    assert np.array_equal(crop.types, sample.types[10:30, 5:35])
    assert np.array_equal(crop.inst > 0, sample.inst[10:30, 5:35] > 0)
    assert crop.name == "tile_y10_x5"


@settings(max_examples=20, deadline=None)
@given(patch=st.integers(8, 48), overlap_share=st.floats(0, 0.8), seed=st.integers(0, 50))
def test_patches_are_windows_of_the_tile(patch, overlap_share, seed):
    sample = toy_sample(seed)
    overlap = int(overlap_share * patch)
    positions = tile_positions(*sample.shape, patch, overlap=overlap)
    for (y, x), p in zip(positions, tile_sample(sample, patch, overlap=overlap)):
        window = np.s_[y : y + patch, x : x + patch]
        assert np.array_equal(p.image, sample.image[window]) and np.array_equal(p.types, sample.types[window])
        # a nucleus of the tile is one nucleus in the patch: the partitions agree pixel for pixel
        pairs = np.unique(np.stack([p.inst.ravel(), sample.inst[window].ravel()]), axis=1)
        assert pairs.shape[1] == np.unique(p.inst).size == np.unique(sample.inst[window]).size
