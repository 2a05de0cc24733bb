"""Colour statistics and colour maps: agree with plain masked NumPy statistics; validate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthaug.conditions import colour_stats, instance_colour_stats, paint_colour_map
from tests.conditions.strategies import instance_masks


@settings(max_examples=60, deadline=None)
@given(instance_masks(max_side=16), st.integers(0, 2**32 - 1))
def test_stats_equal_masked_numpy_statistics(inst, seed):
    image = np.random.default_rng(seed).integers(0, 256, (*inst.shape, 3), dtype=np.uint8)
    pixels = image.astype(np.float64) / 255.0
    stats = colour_stats(image, inst)
    for region, mean, std in (
        (inst != 0, stats.fg_mean, stats.fg_std),
        (inst == 0, stats.bg_mean, stats.bg_std),
    ):
        assert mean.dtype == np.float32 and mean.shape == (3,)
        if region.any():
            np.testing.assert_allclose(mean, pixels[region].mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(std, pixels[region].std(0), rtol=1e-4, atol=1e-5)
        else:  # an absent region reports 0, never NaN
            assert not mean.any() and not std.any()
    ids, means, stds = instance_colour_stats(image, inst)
    assert np.array_equal(ids, np.setdiff1d(np.unique(inst), [0]))
    for label, mean, std in zip(ids, means, stds):
        np.testing.assert_allclose(mean, pixels[inst == label].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std, pixels[inst == label].std(0), rtol=1e-4, atol=1e-5)


def test_uint8_and_float_images_agree_and_vector_is_fg_then_bg():
    inst = np.zeros((4, 4), np.int32)
    inst[:2] = 1
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = (255, 0, 51)
    image[2:] = (0, 102, 255)
    vector = colour_stats(image, inst).as_vector()
    np.testing.assert_allclose(vector, [1.0, 0.0, 0.2, 0.0, 0.4, 1.0], rtol=1e-6)
    np.testing.assert_allclose(colour_stats(image / 255.0, inst).as_vector(), vector, rtol=1e-6)


def test_paint_is_the_inverse_of_stats():
    inst = np.zeros((6, 7), np.uint32)
    inst[1:3, 1:4] = 5
    inst[4:, 5:] = 8
    painted = paint_colour_map(inst, (0.5, 0.2, 0.6), (0.9, 0.8, 0.9), instance_colours={8: (0.1, 0.1, 0.7)})
    assert painted.shape == (3, 6, 7) and painted.dtype == np.float32
    stats = colour_stats(np.moveaxis(painted, 0, -1), inst)
    np.testing.assert_allclose(stats.bg_mean, (0.9, 0.8, 0.9), rtol=1e-6)
    ids, means, _ = instance_colour_stats(np.moveaxis(painted, 0, -1), inst)
    np.testing.assert_allclose(means, [(0.5, 0.2, 0.6), (0.1, 0.1, 0.7)], rtol=1e-6)


def test_instance_colours_for_absent_ids_and_64bit_labels():
    inst = np.zeros((3, 3), np.uint64)
    inst[0, 0] = np.uint64(2**63 + 5)
    painted = paint_colour_map(
        inst, (1, 0, 0), (0, 0, 0), instance_colours={2**63 + 5: (0, 1, 0), 7: (0, 0, 1)}
    )
    np.testing.assert_array_equal(painted[:, 0, 0], [0, 1, 0])
    assert not painted[:, 1:, :].any()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda i, m: colour_stats(m[..., 0], i), ValueError, r"\(H, W, 3\)"),
        (lambda i, m: colour_stats(m[:3], i), ValueError, "same height and width"),
        (lambda i, m: colour_stats(m.astype(np.int32), i), TypeError, "uint8"),
        (lambda i, m: colour_stats(np.full(m.shape, np.nan), i), ValueError, "NaN"),
        (lambda i, m: colour_stats(m * 3.0, i), ValueError, r"\[0, 1\]"),
        (lambda i, m: colour_stats(m, i.astype(np.float32)), TypeError, "integer dtype"),
        (lambda i, m: paint_colour_map(i, (1, 0), (0, 0, 0)), ValueError, "`fg_colour`"),
        (lambda i, m: paint_colour_map(i, (1, 0, 0), (0, 0, 255)), ValueError, "`bg_colour`"),
        (
            lambda i, m: paint_colour_map(i, (1, 0, 0), (0, 0, 0), instance_colours={-1: (0, 0, 0)}),
            ValueError,
            "negative",
        ),
    ],
)
def test_invalid_inputs(call, error, match):
    inst = np.zeros((4, 4), np.int32)
    image = np.full((4, 4, 3), 0.5)
    with pytest.raises(error, match=match):
        call(inst, image)
