"""SyntheticSource: the draw -> (image, inst, types) core behind SyntheticAugment and SyntheticMixDataset."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.augment import SyntheticAugment, SyntheticMixDataset, SyntheticSource
from synthaug.data import NucleiDataset
from tests.augment.conftest import real_sample


@pytest.mark.parametrize("preload", [True, False])
def test_fit_is_the_cache_window_at_the_offset(make_cache, preload):
    cache = make_cache(n=3, size=48)
    source = SyntheticSource(cache, preload=preload)
    stored = cache.read(2)
    for offset, (top, left) in (((0.0, 0.0), (0, 0)), ((0.999, 0.999), (16, 16)), ((0.5, 0.0), (8, 0))):
        image, inst, types = source.fit(2, (32, 32), offset)
        window = (slice(top, top + 32), slice(left, left + 32))
        assert image.shape == (3, 32, 32) and image.dtype == np.uint8
        assert np.array_equal(image, np.moveaxis(stored["image"][window], -1, 0))
        assert np.array_equal(inst, stored["inst"][window]) and np.array_equal(types, stored["type"][window])


def test_index_at_splits_the_unit_interval_by_the_draw_probabilities(make_cache):
    # tile i holds type i % 4 + 1: targeting type 2 gives every tile of type 2 the whole mass
    source = SyntheticSource(make_cache(n=8), target_types=[2])
    grid = (np.arange(100_000) + 0.5) / 100_000
    counts = np.bincount([source.index_at(u) for u in grid], minlength=len(source)) / len(grid)
    assert np.allclose(counts, source.probabilities, atol=1e-4)
    assert set(np.flatnonzero(counts)) == {1, 5}
    assert source.index_at(0.0) == 1 and source.index_at(np.nextafter(1.0, 0.0)) == 5


def test_label_follows_the_label_kind(make_cache):
    cache = make_cache(n=1)
    _, inst, types = SyntheticSource(cache).fit(0, (32, 32))
    assert np.array_equal(SyntheticSource(cache).label(inst, types), types)
    foreground = SyntheticSource(cache, label_kind="foreground").label(inst, types)
    assert set(np.unique(foreground)) == {0, 1} and np.array_equal(foreground, inst > 0)


def test_meta_is_the_cache_record(make_cache):
    cache = make_cache(n=2)
    for preload in (True, False):
        assert SyntheticSource(cache, preload=preload).meta(1) == cache.read(1)["meta"]


def test_bad_sizes_and_labels_are_refused_before_any_draw(make_cache):
    cache = make_cache(size=32)
    source = SyntheticSource(cache)
    with pytest.raises(ValueError, match="crop"):
        source.check_size((64, 64))
    SyntheticSource(cache, crop="resize").check_size((64, 64))  # resizing fits any size
    with pytest.raises(ValueError, match="holds type 7 but the cache has 4 types"):
        source.check_label(np.full((1, 4, 4), 7, np.uint8), "label")


def test_the_transform_and_the_dataset_draw_from_one_source(make_cache):
    # The same cache sample at the same window is the same arrays through either wrapper.
    cache = make_cache(n=6, size=48)
    aug = SyntheticAugment(cache, prob=1.0).set_random_state(4)
    item = real_sample(32).to_dict()
    out = aug(item)
    image, inst, types = aug.source.fit(aug._index, (32, 32), aug._offset)
    assert np.array_equal(out["image"], image.astype(np.float32) / 255)
    assert np.array_equal(out["inst"][0], inst) and np.array_equal(out["label"][0], types)

    mix = SyntheticMixDataset(NucleiDataset([real_sample(32, seed=s) for s in range(4)]), cache, 0.5, seed=1)
    position = next(p for p in range(len(mix)) if mix._table[p, 0] == 1)
    index, offset = int(mix._table[position, 1]), tuple(mix._offsets[position])
    image, inst, types = mix.source.fit(index, (32, 32), offset)
    drawn = mix[position]
    assert drawn["name"] == f"synthetic/{index}"
    assert np.array_equal(drawn["image"], image.astype(np.float32) / 255)
    assert np.array_equal(drawn["inst"][0], inst) and np.array_equal(drawn["label"][0], types)
