"""Draw weights from the cache's per-sample type counts, and SyntheticAugment inside a MONAI Compose."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import Compose, RandFlipd

from synthaug.augment import HVMapsd, SyntheticAugment
from synthaug.augment._draws import draw_probabilities
from synthaug.conditions import compute_hv_maps
from tests.augment.conftest import real_sample


def test_probabilities_follow_weighted_instance_counts(make_cache):
    cache = make_cache(n=8, types_of=lambda i: (1, 2) if i < 4 else (3,))
    counts = cache.type_instance_counts()
    probs = draw_probabilities(cache, target_types=[2, 3], type_weights={3: 2.0})
    expected = counts[:, 2] + 2.0 * counts[:, 3]
    np.testing.assert_allclose(probs, expected / expected.sum())
    assert probs.sum() == pytest.approx(1.0)


def test_pixel_counts_weight_by_area(make_cache):
    cache = make_cache(n=8)
    probs = draw_probabilities(cache, target_types=[1], count_by="pixels")
    pixels = cache.type_pixel_counts()[:, 1]
    np.testing.assert_allclose(probs, pixels / pixels.sum())


def test_uniform_without_targets_and_error_when_no_sample_has_them(make_cache):
    cache = make_cache(n=6, types_of=lambda i: (1,))
    np.testing.assert_allclose(draw_probabilities(cache), np.full(6, 1 / 6))
    with pytest.raises(ValueError, match="no cached sample contains nuclei of the weighted types"):
        draw_probabilities(cache, target_types=[4])
    with pytest.raises(ValueError, match="type_weights"):
        draw_probabilities(cache, type_weights={1: -1.0})


def test_hv_targets_follow_the_synthetic_masks_after_flips(make_cache):
    keys = ("image", "label", "inst")
    pipeline = Compose([
        SyntheticAugment(make_cache(), prob=1.0),
        RandFlipd(keys, prob=1.0, spatial_axis=1),
        HVMapsd("inst"),
    ]).set_random_state(0)
    out = pipeline(real_sample().to_dict())
    inst = np.asarray(out["inst"])[0]
    assert out["is_synthetic"] is True and inst.max() > 0
    np.testing.assert_allclose(np.asarray(out["hover_inst"]), compute_hv_maps(inst), atol=1e-6)
