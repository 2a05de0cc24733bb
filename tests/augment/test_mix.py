"""SyntheticMixDataset: exact ratios, epoch seeding, item format, targeting and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.augment import SyntheticMixDataset
from synthaug.data import NucleiDataset
from tests.augment.conftest import real_sample


@pytest.fixture
def real():
    return NucleiDataset([real_sample(seed=s) for s in range(12)])


def _flags(dataset) -> list[bool]:
    return [dataset[i]["is_synthetic"] for i in range(len(dataset))]


@pytest.mark.parametrize(("ratio", "n_syn"), [(0.25, 4), ((3, 1), 4), (0.5, 12), (0.0, 0)])
def test_epoch_holds_every_real_sample_once_and_the_exact_synthetic_count(make_cache, real, ratio, n_syn):
    mix = SyntheticMixDataset(real, make_cache(), ratio, seed=0)
    flags = _flags(mix)
    assert len(mix) == 12 + n_syn and sum(flags) == n_syn == mix.num_synthetic
    names = sorted(mix[i]["name"] for i in range(len(mix)) if not flags[i])
    assert names == sorted(f"real_{s}" for s in range(12))


def test_length_sets_the_epoch_size_even_synthetic_only(make_cache, real):
    mix = SyntheticMixDataset(real, make_cache(), 0.3, length=20, seed=0)
    assert len(mix) == 20 and sum(_flags(mix)) == 6
    only = SyntheticMixDataset(real, make_cache(), 1.0, length=5)
    assert all(_flags(only))


def test_tables_are_epoch_seeded(make_cache, real):
    cache = make_cache()

    def names(mix):
        return [mix[i]["name"] for i in range(len(mix))]

    a, b = SyntheticMixDataset(real, cache, 0.5, seed=3), SyntheticMixDataset(real, cache, 0.5, seed=3)
    epoch0 = names(a)
    assert epoch0 == names(b)  # same seed, same table, in any process
    a.set_epoch(1)
    assert names(a) != epoch0 and sum(_flags(a)) == 12
    a.set_epoch(0)
    assert names(a) == epoch0
    assert names(SyntheticMixDataset(real, cache, 0.5, seed=4)) != epoch0
    # Item content (crop windows included) is fixed by the table, not by the call order.
    assert np.array_equal(a[5]["image"], a[5]["image"])


def test_synthetic_items_match_the_real_format(make_cache, real):
    mix = SyntheticMixDataset(real, make_cache(size=48), 0.5, seed=0)  # 48-px tiles cropped to 32
    reference = real[0]
    synthetic = next(mix[i] for i in range(len(mix)) if mix[i]["is_synthetic"])
    assert set(synthetic) == set(reference) | {"is_synthetic"}
    for key in ("image", "label", "inst"):
        assert synthetic[key].dtype == reference[key].dtype and synthetic[key].shape == reference[key].shape
    assert set(synthetic["meta"]) == set(reference["meta"]) and synthetic["name"].startswith("synthetic/")
    assert np.array_equal(synthetic["label"][0] > 0, synthetic["inst"][0] > 0)


def test_loader_batches_collate_and_count_exactly(make_cache, real):
    mix = SyntheticMixDataset(real, make_cache(), (2, 1), seed=0)
    loader = torch.utils.data.DataLoader(mix, batch_size=5, num_workers=2, shuffle=True)
    flags = torch.cat([batch["is_synthetic"] for batch in loader])
    assert len(flags) == 18 and int(flags.sum()) == 6


def test_target_types_steer_synthetic_draws(make_cache, real):
    mix = SyntheticMixDataset(real, make_cache(), 0.5, target_types=[4], seed=0)
    for i in range(len(mix)):
        item = mix[i]
        if item["is_synthetic"]:
            assert set(np.unique(item["label"])) <= {0, 4}


def test_transform_applies_to_real_and_synthetic_items(make_cache, real):
    def flip(item):
        return {**item, "image": item["image"][:, :, ::-1]}

    plain = SyntheticMixDataset(real, make_cache(), 0.5, seed=0)
    flipped = SyntheticMixDataset(real, make_cache(), 0.5, seed=0, transform=flip)
    for i in range(len(plain)):
        assert np.array_equal(flipped[i]["image"], plain[i]["image"][:, :, ::-1])


@pytest.mark.parametrize(
    ("ratio", "kwargs", "match"),
    [(1.5, {}, "ratio"), ((1, 2, 3), {}, "ratio"), ((0, 0), {}, "ratio"), (1.0, {}, "length"),
     (0.5, {"length": 0}, "length"), (0.5, {"crop": "pad"}, "crop"), (0.5, {"num_types": 2}, "2")],
)
def test_bad_arguments_are_named(make_cache, real, ratio, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticMixDataset(real, make_cache(), ratio, **kwargs)


def test_empty_or_too_small_cache_is_refused(make_cache, real):
    with pytest.raises(ValueError, match="empty"):
        SyntheticMixDataset(real, make_cache(n=0))
    with pytest.raises(ValueError, match="crop='resize'"):
        SyntheticMixDataset(NucleiDataset([real_sample(48)]), make_cache(size=32))
    named = make_cache(type_names={1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"})
    with pytest.raises(ValueError, match="the same id must mean the same class"):
        pannuke_like = {1: "neoplastic", 2: "inflammatory", 3: "connective", 4: "dead"}
        SyntheticMixDataset(real, named, type_names=pannuke_like)
    # a 6-type cache (recording no names) with 4-type real data would yield labels 5 and 6
    with pytest.raises(ValueError, match="holds 6 nucleus types but the real data's `type_names` go up to 4"):
        SyntheticMixDataset(real, make_cache(num_types=6), type_names=named.type_names)


def test_preloaded_cache_gives_the_same_items(make_cache, real):
    cache = make_cache(size=48)
    read = SyntheticMixDataset(real, cache, 0.5, seed=2)
    preloaded = SyntheticMixDataset(real, cache, 0.5, seed=2, preload=True)
    for i in range(len(read)):
        for key in ("image", "label", "inst"):
            assert np.array_equal(read[i][key], preloaded[i][key])
