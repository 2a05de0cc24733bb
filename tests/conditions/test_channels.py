"""ConditionChannels: canonical channel order, equality, JSON round trip, validation."""

from __future__ import annotations

import json

import pytest

from synthaug.conditions import ConditionChannels


def test_default_channel_order_is_the_contract():
    channels = ConditionChannels()
    assert channels.names == (
        "mask",
        "boundary",
        "hv_h",
        "hv_v",
        "type_1",
        "type_2",
        "type_3",
        "type_4",
        "colour_r",
        "colour_g",
        "colour_b",
    )
    assert channels.num_channels == 11
    assert channels.group_slice("types") == slice(4, 8)
    assert channels.index("colour_g") == 9


def test_include_order_does_not_matter_and_layout_is_hashable():
    a = ConditionChannels(num_types=3, include=("types", "mask"))
    b = ConditionChannels(num_types=3, include=("mask", "types"))
    assert a == b and hash(a) == hash(b)
    assert a != ConditionChannels(num_types=2, include=("mask", "types"))
    assert a.names == ("mask", "type_1", "type_2", "type_3")


def test_to_dict_is_json_and_round_trips():
    channels = ConditionChannels(num_types=6, include=("hv", "colour"), hv_convention="hovernet")
    data = json.loads(json.dumps(channels.to_dict()))
    assert data["channels"] == list(channels.names)
    assert ConditionChannels.from_dict(data) == channels


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"include": ("mask", "depth")}, ValueError, "`include` must be one of"),
        ({"include": ("mask", "mask")}, ValueError, "repeats"),
        ({"include": ()}, ValueError, "empty"),
        ({"include": "mask"}, TypeError, r"include=\('mask',\)"),
        ({"num_types": 0}, ValueError, "drop 'types'"),
        ({"num_types": 2.0}, TypeError, "`num_types` must be an int"),
        ({"hv_convention": "pannuke"}, ValueError, "`hv_convention`"),
    ],
)
def test_invalid_layouts(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConditionChannels(**kwargs)


def test_from_dict_rejects_inconsistent_configs():
    data = ConditionChannels().to_dict()
    with pytest.raises(ValueError, match="edited inconsistently"):
        ConditionChannels.from_dict({**data, "num_types": 3})
    with pytest.raises(ValueError, match="unknown keys"):
        ConditionChannels.from_dict({**data, "depth": 1})
    with pytest.raises(ValueError, match="not one of these condition channels"):
        ConditionChannels().index("type_9")
    with pytest.raises(ValueError, match="is not included"):
        ConditionChannels(include=("mask",)).group_slice("hv")
