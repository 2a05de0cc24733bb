"""Procedural layouts: always valid, shares kept, reproducible, and the per-type arrangements."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import regionprops

from synthaug.data.layouts import (
    Layout,
    _place_ellipses_kernel,
    generate_layout,
    place_ellipses_reference,
    sanitize_instances,
)

SETTINGS = settings(max_examples=25, deadline=None)


def touching_pairs(inst: np.ndarray) -> int:
    """Pixel pairs of two different nuclei that are 8-neighbours."""
    count = 0
    for a, b in ((inst[:, :-1], inst[:, 1:]), (inst[:-1], inst[1:]),
                 (inst[:-1, :-1], inst[1:, 1:]), (inst[:-1, 1:], inst[1:, :-1])):  # fmt: skip
        count += int(((a > 0) & (b > 0) & (a != b)).sum())
    return count


def type_counts(layout: Layout) -> np.ndarray:
    return np.bincount(list(layout.inst_types.values()), minlength=5)


@SETTINGS
@given(
    height=st.integers(32, 96), width=st.integers(32, 96), density=st.floats(0.0, 0.45),
    gap=st.integers(0, 2), seed=st.integers(0, 2**32 - 1),
    shares=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda s: sum(s) > 0.05),
)
def test_layouts_are_always_valid(height, width, density, gap, seed, shares):
    layout = generate_layout(
        height, width, type_shares=dict(zip(range(1, 5), shares)), density=density, gap=gap, seed=seed
    )
    layout.validate()  # ids compact 1..N, inst_types covers them, type map == inst_types painted
    assert layout.inst.dtype == np.int32 and layout.types.dtype == np.uint8
    assert layout.inst.shape == layout.types.shape == (height, width)
    assert set(layout.inst_types.values()) <= {t for t, s in zip(range(1, 5), shares) if s > 0}
    if gap > 0:
        assert touching_pairs(layout.inst) == 0


@SETTINGS
@given(
    shares=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda s: sum(s) > 0.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_instance_shares_follow_the_request(shares, seed):
    layout = generate_layout(192, 192, type_shares=dict(zip(range(1, 5), shares)), density=0.2, seed=seed)
    n = layout.num_instances
    assert n >= 15  # a 192 px tile at 20 % cover holds dozens of nuclei
    requested = np.array(shares) / sum(shares)
    achieved = type_counts(layout)[1:] / n
    # Counts are whole numbers: each type is within one nucleus (plus rounding) of its share.
    assert np.all(np.abs(achieved - requested) <= 1.5 / n + 0.02)


def test_density_is_reached_on_a_roomy_tile():
    covers = [(generate_layout(256, 256, density=0.2, seed=s).inst > 0).mean() for s in range(4)]
    assert 0.15 <= np.mean(covers) <= 0.25


def test_same_seed_same_layout_and_generator_accepted():
    a = generate_layout(96, 96, seed=7)
    b = generate_layout(96, 96, seed=np.random.default_rng(7))
    c = generate_layout(96, 96, seed=8)
    assert np.array_equal(a.inst, b.inst) and a.inst_types == b.inst_types
    assert not np.array_equal(a.inst, c.inst)


def test_type_shares_take_consep_names_and_aliases():
    for key in ("columnar", "Epithelial", 3, "3"):
        layout = generate_layout(128, 128, type_shares={key: 1.0}, seed=0)
        assert set(layout.inst_types.values()) == {3}
    with pytest.raises(ValueError, match="type_shares key"):
        generate_layout(128, 128, type_shares={"neoplastic": 1.0}, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"height": 8}, ValueError, "height"),
        ({"density": 0.9}, ValueError, "density"),
        ({"density": -0.1}, ValueError, "density"),
        ({"size": 10.0}, ValueError, "size"),
        ({"gap": -1}, ValueError, "gap"),
        ({"type_shares": {"goblet": 1.0}}, ValueError, "type_shares key"),
        ({"type_shares": {5: 1.0}}, ValueError, "type_shares key"),
        ({"type_shares": {1: 0.0}}, ValueError, "positive share"),
        ({"type_shares": [0.5, 0.5]}, TypeError, "type_shares"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    args = {"height": 64, "width": 64} | kwargs
    with pytest.raises(error, match=match):
        generate_layout(args.pop("height"), args.pop("width"), **args)


def _orientations(layout: Layout, type_id: int):
    """Region properties of the whole (not border-cut) nuclei of one type."""
    return [p for p in regionprops(layout.inst) if layout.inst_types[p.label] == type_id and p.area > 30]


def test_morphology_per_type():
    """Epithelial and spindle nuclei are elongated, inflammatory ones round; epithelial ones largest
    (CoNSeP medians: 295 px epithelial, ~175 px inflammatory and spindle)."""
    ratio = {}
    area = {}
    for t in (2, 3, 4):
        props = [p for s in range(3) for p in _orientations(generate_layout(256, 256, seed=s), t)]
        ratio[t] = np.median([p.axis_major_length / p.axis_minor_length for p in props])
        area[t] = np.median([p.area for p in props])
    assert ratio[2] < 1.5 < ratio[3] and ratio[4] > 2.0
    assert max(area[2], area[4]) < 0.8 * area[3]


def _neighbour_pairs(props, max_dist):
    centres = np.array([p.centroid for p in props])
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return [(i, int(np.argmin(d[i]))) for i in range(len(props)) if d[i].min() < max_dist], centres


def _axis_angle(p):
    # regionprops orientation: angle between the row axis and the major axis; as a unit vector (y, x).
    return np.array([np.cos(p.orientation), np.sin(p.orientation)])


def test_spindle_nuclei_share_local_orientation():
    agreement = []
    for s in range(3):
        tile = _orientations(generate_layout(256, 256, type_shares={4: 1}, seed=s), 4)
        pairs, _ = _neighbour_pairs(tile, 18)
        agreement += [abs(_axis_angle(tile[i]) @ _axis_angle(tile[j])) for i, j in pairs]
    assert len(agreement) > 20
    # |cos| of the angle between neighbours' axes: 2/pi ~ 0.64 for random orientations.
    assert np.median(agreement) > 0.9


def test_epithelial_nuclei_stand_side_by_side():
    """In a palisade, the neighbour lies across the long axis (perpendicular), not along it."""
    across = []
    for s in range(3):
        tile = _orientations(generate_layout(256, 256, type_shares={3: 1}, seed=s), 3)
        pairs, centres = _neighbour_pairs(tile, 20)
        for i, j in pairs:
            step = (centres[j] - centres[i]) / np.linalg.norm(centres[j] - centres[i])
            across.append(abs(_axis_angle(tile[i]) @ step))
    assert len(across) > 20
    # |cos| between long axis and neighbour direction: 0.5 on average for random layouts.
    assert np.median(across) < 0.35


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), gap=st.integers(0, 2), n=st.integers(0, 40))
def test_placement_kernel_matches_reference(seed, gap, n):
    rng = np.random.default_rng(seed)
    ellipses = np.column_stack([
        rng.uniform(-5, 53, n), rng.uniform(-5, 53, n), rng.uniform(1, 12, n), rng.uniform(1, 6, n),
        rng.uniform(0, np.pi, n),
    ])  # fmt: skip
    cand_types = rng.integers(1, 5, n)
    quota = np.array([0, 3, 5, 100, 2])
    inst_kernel = np.zeros((48, 48), np.int32)
    inst_ref = np.zeros((48, 48), np.int32)
    inst_kernel[:4, :4] = inst_ref[:4, :4] = 1  # ids continue after what is already there
    q_kernel, q_ref = quota.copy(), quota.copy()
    placed_kernel = _place_ellipses_kernel(ellipses, cand_types, q_kernel, inst_kernel, gap, 3)
    placed_ref = place_ellipses_reference(ellipses, cand_types, q_ref, inst_ref, gap, 3)
    assert np.array_equal(placed_kernel, placed_ref)
    assert np.array_equal(inst_kernel, inst_ref) and np.array_equal(q_kernel, q_ref)
    assert np.all(np.bincount(cand_types[placed_kernel], minlength=5) <= quota)


def test_sanitize_keeps_largest_piece_and_compacts():
    inst = np.zeros((12, 12), np.int32)
    inst[0:4, 0:4] = 5  # big piece of 5
    inst[8:9, 8:9] = 5  # 1-px fragment of 5
    inst[6:9, 0:3] = 9  # 9 px nucleus
    inst[0:2, 10:12] = 7  # 4 px: below min_area
    inst[10:12, 0:2] = 3  # no type entry: dropped
    cleaned, types, inst_types = sanitize_instances(inst, {5: 2, 9: 4, 7: 1}, min_area=5)
    assert inst_types == {1: 2, 2: 4}
    assert (cleaned == 1).sum() == 16 and (cleaned == 2).sum() == 9 and cleaned[8, 8] == 0
    Layout(cleaned, types, inst_types).validate()


def test_validate_rejects_broken_layouts():
    inst = np.zeros((8, 8), np.int32)
    inst[1:3, 1:3] = 2
    with pytest.raises(ValueError, match="compact"):
        Layout(inst, (inst > 0).astype(np.uint8), {2: 1}).validate()
    inst[inst == 2] = 1
    with pytest.raises(ValueError, match="painted"):
        Layout(inst, np.zeros_like(inst, dtype=np.uint8), {1: 1}).validate()
