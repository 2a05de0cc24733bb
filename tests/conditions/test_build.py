"""build_conditions and boundary_map: channel order and ranges, validation, edge cases."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from skimage.segmentation import find_boundaries

from synthaug.conditions import (
    ColourStats,
    ConditionChannels,
    boundary_map,
    build_conditions,
    colour_stats,
    compute_hv_maps,
    paint_colour_map,
    type_map_from_instances,
    type_one_hot,
)
from tests.conditions.strategies import instance_masks

COLOUR = np.array([0.3, 0.1, 0.4, 0.9, 0.8, 0.85])


def toy() -> tuple[np.ndarray, dict[int, int], np.ndarray]:
    inst = np.zeros((16, 20), np.int32)
    inst[2:7, 3:9] = 4
    inst[7:12, 5:10] = 11  # touches instance 4
    inst[12:, 16:] = 2  # touches the border
    inst[0, 19] = 30  # one pixel
    image = np.full((16, 20, 3), 230, np.uint8)
    image[inst != 0] = (90, 40, 120)
    return inst, {4: 3, 11: 1, 2: 2, 30: 4}, image


@settings(max_examples=100, deadline=None)
@given(instance_masks())
def test_boundary_kernel_equals_find_boundaries_inner(inst):
    expected = find_boundaries(inst, connectivity=1, mode="inner")
    assert np.array_equal(boundary_map(inst), expected.astype(np.float32))
    assert np.array_equal(boundary_map(inst, backend="reference"), expected.astype(np.float32))


def test_boundary_kernel_on_touching_and_border_instances():
    inst, _, _ = toy()
    edge = boundary_map(inst)
    assert edge[6, 5] == 1 and edge[7, 5] == 1  # the contact line between 4 and 11, on both sides
    assert edge[15, 19] == 0  # the image border is not a boundary
    assert edge[0, 19] == 1  # a one-pixel nucleus is all boundary
    assert np.array_equal(edge, find_boundaries(inst, mode="inner").astype(np.float32))


def test_full_stack_channels_match_the_individual_builders():
    inst, inst_types, image = toy()
    channels = ConditionChannels(num_types=4)
    cond = build_conditions(inst, inst_types=inst_types, image=image, channels=channels)
    assert cond.shape == (channels.num_channels, 16, 20) and cond.dtype == np.float32
    assert np.array_equal(cond[channels.index("mask")], (inst != 0).astype(np.float32))
    assert np.array_equal(cond[channels.index("boundary")], boundary_map(inst))
    assert np.array_equal(cond[channels.group_slice("hv")], compute_hv_maps(inst))
    types = type_one_hot(type_map_from_instances(inst, inst_types), 4)
    assert np.array_equal(cond[channels.group_slice("types")], types)
    stats = colour_stats(image, inst)
    painted = paint_colour_map(inst, stats.fg_mean, stats.bg_mean)
    assert np.array_equal(cond[channels.group_slice("colour")], painted)


def test_ranges_and_value_sets():
    inst, inst_types, _ = toy()
    channels = ConditionChannels(num_types=4)
    cond = build_conditions(inst, inst_types=inst_types, colour=COLOUR, channels=channels)
    binary = [
        channels.index(n) for n in channels.names if n == "mask" or n == "boundary" or n.startswith("type_")
    ]
    assert set(np.unique(cond[binary])) <= {0.0, 1.0}
    hv = cond[channels.group_slice("hv")]
    assert hv.min() == -1.0 and hv.max() == 1.0
    colour = cond[channels.group_slice("colour")]
    np.testing.assert_allclose(colour[:, 0, 0], COLOUR[3:], rtol=1e-6)  # background pixel
    np.testing.assert_allclose(colour[:, 3, 4], COLOUR[:3], rtol=1e-6)  # nucleus pixel


def test_type_map_takes_precedence_and_missing_types_give_zero_channels():
    inst, inst_types, _ = toy()
    channels = ConditionChannels(num_types=4, include=("types",))
    type_map = type_map_from_instances(inst, {4: 1, 11: 1, 2: 1, 30: 1})
    from_map = build_conditions(inst, type_map=type_map, inst_types=inst_types, channels=channels)
    assert np.array_equal(from_map[0], (inst != 0).astype(np.float32))
    assert not build_conditions(inst, channels=channels).any()  # no type information at all


def test_types_on_background_pixels_paint_no_type_channel():
    inst, _, _ = toy()
    channels = ConditionChannels(num_types=2)
    type_map = np.ones(inst.shape, np.int64)  # type 1 everywhere, background included
    stack = build_conditions(inst, type_map=type_map, colour=COLOUR, channels=channels)
    type_1 = stack[channels.group_slice("types")][0]
    mask = stack[channels.group_slice("mask")][0]
    assert np.array_equal(type_1, mask)  # a type channel is set only where the mask says nucleus


def test_colour_accepts_stats_and_matches_vector():
    inst, _, image = toy()
    stats = colour_stats(image, inst)
    channels = ConditionChannels(include=("colour",))
    assert isinstance(stats, ColourStats)
    by_stats = build_conditions(inst, colour=stats, channels=channels)
    assert np.array_equal(by_stats, build_conditions(inst, colour=stats.as_vector(), channels=channels))
    assert np.array_equal(by_stats, build_conditions(inst, image=image, channels=channels))


def test_hovernet_layout_uses_hovernet_maps():
    inst, _, _ = toy()
    channels = ConditionChannels(include=("hv",), hv_convention="hovernet")
    expected = compute_hv_maps(inst, convention="hovernet")
    assert np.array_equal(build_conditions(inst, channels=channels), expected)


def test_layout_round_trips_through_json():
    channels = ConditionChannels(num_types=2, include=("colour", "mask", "hv"))
    restored = ConditionChannels.from_dict(json.loads(json.dumps(channels.to_dict())))
    assert restored == channels
    assert restored.names == ("mask", "hv_h", "hv_v", "colour_r", "colour_g", "colour_b")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inst": np.zeros((16, 20), np.float64)}, TypeError, "integer dtype"),
        ({"inst": -np.ones((16, 20), np.int32)}, ValueError, "negative labels"),
        ({"image": np.zeros((16, 21, 3), np.uint8), "colour": None}, ValueError, "same height and width"),
        ({"image": np.full((16, 20, 3), np.nan), "colour": None}, ValueError, "NaN"),
        ({"colour": None}, ValueError, "neither `colour` nor `image`"),
        ({"colour": [0.1, 0.2, 0.3]}, ValueError, r"\(6,\) vector"),
        ({"colour": [0.1, 0.2, 0.3, 0.4, 0.5, 2.0]}, ValueError, r"in \[0, 1\]"),
        ({"type_map": np.zeros((15, 20), np.uint8)}, ValueError, "`type_map` has shape"),
        ({"type_map": np.full((16, 20), 5, np.uint8)}, ValueError, "num_types"),
        ({"inst_types": {4: 1}}, ValueError, "no type for 3 instance"),
        ({"inst_types": {4: 9, 11: 1, 2: 2, 30: 4}}, ValueError, "has type 9 but `channels`"),
        ({"type_map": np.full((16, 20), 7, np.int64)}, ValueError, "has type 7 but `channels`"),
        ({"colour": {"fg": 1}}, TypeError, r"`colour` must be a \(6,\) vector"),
        ({"channels": {"num_types": 4}}, TypeError, "ConditionChannels"),
    ],
)
def test_invalid_inputs_raise_saying_what_and_how(kwargs, error, match):
    inst, _, _ = toy()
    kwargs = {"inst": inst, "colour": COLOUR, **kwargs}
    with pytest.raises(error, match=match):
        build_conditions(**kwargs)


def test_sparse_64bit_labels_and_wide_type_maps_give_the_same_stack():
    inst, inst_types, _ = toy()
    offset = np.uint64(2**62)
    sparse = np.where(inst != 0, inst.astype(np.uint64) + offset, 0).astype(np.uint64)
    sparse_types = {int(k + offset): v for k, v in inst_types.items()}
    expected = build_conditions(inst, inst_types=inst_types, colour=COLOUR)
    assert np.array_equal(build_conditions(sparse, inst_types=sparse_types, colour=COLOUR), expected)
    wide = type_map_from_instances(inst, inst_types).astype(np.int64)
    assert np.array_equal(build_conditions(inst, type_map=wide, colour=COLOUR), expected)


def test_empty_mask_is_valid():
    cond = build_conditions(np.zeros((8, 8), np.uint8), colour=COLOUR)
    channels = ConditionChannels()
    assert not cond[: channels.group_slice("colour").start].any()
    np.testing.assert_allclose(cond[channels.group_slice("colour"), 4, 4], COLOUR[3:], rtol=1e-6)


def test_conditions_package_does_not_import_torch():
    import subprocess

    code = "import sys, synthaug.conditions; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
