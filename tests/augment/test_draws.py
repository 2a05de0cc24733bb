"""Draw weights from the cache's per-sample type counts, and SyntheticAugment inside a MONAI Compose."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import Compose, RandFlipd

from synthaug.augment import HVMapsd, SyntheticAugment, sample_draw_probabilities
from synthaug.augment._draws import draw_probabilities
from synthaug.conditions import compute_hv_maps
from synthaug.data import Sample
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


def _tile(types: tuple[int, ...]) -> Sample:
    """A 32x32 sample with one 4x4 nucleus of each of ``types``."""
    inst = np.zeros((32, 32), np.int32)
    type_map = np.zeros((32, 32), np.uint8)
    for i, t in enumerate(types, start=1):
        r, c = divmod(i - 1, 6)
        inst[5 * r : 5 * r + 4, 5 * c : 5 * c + 4] = i
        type_map[inst == i] = t
    image = np.full((32, 32, 3), 200, np.uint8)
    return Sample(image, inst, type_map, dict(enumerate(types, start=1)), name=f"tile{len(types)}")


def test_real_samples_are_weighted_by_their_type_counts_as_cached_pairs():
    samples = [_tile((1,) + (3,) * i) for i in range(4)]  # i nuclei of type 3, one of type 1
    rare = np.arange(4.0)
    probs = sample_draw_probabilities(samples, 4, target_types=[3], uniform_share=0.5)
    np.testing.assert_allclose(probs, 0.5 / 4 + 0.5 * rare / rare.sum())
    weighted = sample_draw_probabilities(samples, 4, type_weights={1: 1.0, 3: 2.0})
    np.testing.assert_allclose(weighted, (1 + 2 * rare) / (1 + 2 * rare).sum())
    np.testing.assert_allclose(sample_draw_probabilities(samples, 4), 1 / 4)
    everything = sample_draw_probabilities(samples, 4, target_types=[3], uniform_share=1)
    np.testing.assert_allclose(everything, 1 / 4)


def test_real_sample_weights_refuse_bad_input():
    samples = [_tile((1, 2)) for _ in range(3)]
    with pytest.raises(ValueError, match="no sample contains nuclei of the weighted types"):
        sample_draw_probabilities(samples, 4, target_types=[3])
    with pytest.raises(ValueError, match="`uniform_share` must lie in"):
        sample_draw_probabilities(samples, 4, target_types=[1], uniform_share=1.5)
    with pytest.raises(TypeError, match="`uniform_share` must be a number"):
        sample_draw_probabilities(samples, 4, target_types=[1], uniform_share="half")
    with pytest.raises(ValueError, match="target_types"):
        sample_draw_probabilities(samples, 4, target_types=[5])
    with pytest.raises(ValueError, match="outside 0..1"):
        sample_draw_probabilities(samples, 1, target_types=[1])
    with pytest.raises(ValueError, match="`samples` is empty"):
        sample_draw_probabilities([], 4, target_types=[1])
    with pytest.raises(TypeError, match="num_types"):
        sample_draw_probabilities(samples, "4", target_types=[1])


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
