"""Type maps: round trips between instance tables and pixel maps, one-hot layout, type lookup."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthaug.conditions import (
    instance_types_from_type_map,
    instances_of_type,
    type_map_from_instances,
    type_one_hot,
)
from tests.conditions.strategies import instance_masks


@settings(max_examples=80, deadline=None)
@given(instance_masks(), st.integers(0, 2**32 - 1))
def test_table_to_map_to_table_round_trip(inst, seed):
    ids = np.setdiff1d(np.unique(inst), [0])
    rng = np.random.default_rng(seed)
    table = {int(i): int(t) for i, t in zip(ids, rng.integers(1, 5, ids.size))}
    table[10**6] = 2  # an instance cropped away: ignored
    type_map = type_map_from_instances(inst, table)
    assert type_map.dtype == np.uint8 and type_map.shape == inst.shape
    assert not type_map[inst == 0].any()
    for label in ids:
        assert (type_map[inst == label] == table[int(label)]).all()
    assert instance_types_from_type_map(inst, type_map) == {int(i): table[int(i)] for i in ids}
    one_hot = type_one_hot(type_map, 4)
    assert np.array_equal(one_hot.sum(0), (inst != 0).astype(np.float32))  # exactly one type per nucleus
    for k in range(1, 5):
        expected = [i for i in ids if table[int(i)] == k]
        assert instances_of_type(inst, table, k).tolist() == expected
    assert instances_of_type(inst, table, {1, 3}).tolist() == [i for i in ids if table[int(i)] in (1, 3)]


def test_majority_vote_ignores_background_and_breaks_ties_low():
    inst = np.array([[1, 1, 1, 1, 2, 2, 3, 3]])
    types = np.array([[0, 0, 0, 2, 3, 1, 0, 0]])
    assert instance_types_from_type_map(inst, types) == {1: 2, 2: 1, 3: 0}


def test_sparse_64bit_labels():
    inst = np.array([[0, 2**62, 2**62 + 9]], np.uint64)
    table = {2**62: 1, 2**62 + 9: 3}
    assert type_map_from_instances(inst, table).tolist() == [[0, 1, 3]]
    assert instances_of_type(inst, table, 3).tolist() == [2**62 + 9]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda i: type_map_from_instances(i, {1: 1}),
            ValueError,
            r"no type for 1 instance\(s\) of `inst` \(2\)",
        ),
        (lambda i: type_map_from_instances(i, [1, 2]), TypeError, "`inst_types` must map"),
        (lambda i: type_map_from_instances(i, {1: 1, 2: 300}), ValueError, "0..255"),
        (lambda i: type_one_hot(i, 1), ValueError, "`num_types` is 1"),
        (lambda i: type_one_hot(i, 0), ValueError, "`num_types` must be a positive integer"),
        (lambda i: type_one_hot(i.astype(float), 2), TypeError, "integer dtype"),
        (lambda i: instance_types_from_type_map(i, i[:, :1]), ValueError, "must match"),
        (lambda i: instances_of_type(i, {1: 1, 2: 1}, 1.5), TypeError, "`type_ids`"),
    ],
)
def test_invalid_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call(np.array([[0, 1], [2, 2]], np.int32))
