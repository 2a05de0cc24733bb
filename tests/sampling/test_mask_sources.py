"""Mask sources and edits: always-valid layouts, per-item reproducibility, edit semantics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from synthaug.data import CONSEP_TYPES
from synthaug.data.layouts import Layout, generate_layout
from synthaug.data.toy import make_toy_samples
from synthaug.sampling.mask_sources import (
    CropEdit,
    DihedralEdit,
    ElasticEdit,
    LayoutMaskSource,
    MaskRecord,
    MaskSource,
    RealMaskSource,
    ReplaceInstancesEdit,
    find_free_anchor,
)

SETTINGS = settings(max_examples=15, deadline=None)


@pytest.fixture(scope="module")
def samples():
    return make_toy_samples(4, 80, 80, seed=0, density=0.25)


def touching_pairs(inst: np.ndarray) -> int:
    count = 0
    for a, b in ((inst[:, :-1], inst[:, 1:]), (inst[:-1], inst[1:]),
                 (inst[:-1, :-1], inst[1:, 1:]), (inst[:-1, 1:], inst[1:, :-1])):  # fmt: skip
        count += int(((a > 0) & (b > 0) & (a != b)).sum())
    return count


def sorted_areas(layout: Layout) -> list[int]:
    return sorted(np.bincount(layout.inst.ravel())[1:].tolist())


EDITS = [
    DihedralEdit(), ElasticEdit(alpha=5.0, sigma=8.0), CropEdit(48, 40),
    ReplaceInstancesEdit("epithelial", "copy", 0.5, vocabulary=CONSEP_TYPES),
    ReplaceInstancesEdit(None, "move", 1.0, gap=2),
]  # fmt: skip


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), edit=st.sampled_from(EDITS))
def test_every_edit_returns_a_valid_layout(seed, edit):
    rng = np.random.default_rng(seed)
    layout = generate_layout(64, 64, density=0.3, seed=rng)
    out = edit(layout, rng)
    out.validate()  # compact ids, no missing/extra types, type map == inst_types painted
    assert out.inst.dtype == np.int32 and out.types.dtype == np.uint8


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_dihedral_keeps_every_nucleus(seed):
    layout = generate_layout(64, 64, seed=seed)
    out = DihedralEdit()(layout, np.random.default_rng(seed))
    assert sorted_areas(out) == sorted_areas(layout)
    assert sorted(out.inst_types.values()) == sorted(layout.inst_types.values())


def test_copy_adds_only_target_nuclei_in_free_space():
    layout = generate_layout(128, 128, density=0.15, gap=1, seed=1)
    before = np.bincount(list(layout.inst_types.values()), minlength=5)
    out = ReplaceInstancesEdit(4, "copy", 1.0, gap=1)(layout, np.random.default_rng(0))  # 4: spindle
    after = np.bincount(list(out.inst_types.values()), minlength=5)
    assert after[4] > before[4] and np.array_equal(after[:4], before[:4])
    # Originals untouched: every original nucleus pixel is still nucleus, of the same type.
    nuclei = layout.inst > 0
    assert (out.inst[nuclei] > 0).all() and np.array_equal(out.types[nuclei], layout.types[nuclei])
    assert touching_pairs(out.inst) == 0


def test_move_keeps_counts_and_shapes():
    layout = generate_layout(128, 128, density=0.15, gap=1, seed=2)
    move = ReplaceInstancesEdit("inflammatory", "move", 1.0, vocabulary=CONSEP_TYPES)
    out = move(layout, np.random.default_rng(0))
    assert sorted(out.inst_types.values()) == sorted(layout.inst_types.values())
    assert sorted_areas(out) == sorted_areas(layout)
    assert not np.array_equal(out.inst > 0, layout.inst > 0)
    assert touching_pairs(out.inst) == 0


def test_elastic_deform_moves_boundaries_but_keeps_most_nuclei():
    layout = generate_layout(96, 96, density=0.25, seed=3)
    out = ElasticEdit(alpha=3.0, sigma=10.0)(layout, np.random.default_rng(0))
    assert out.num_instances >= 0.8 * layout.num_instances
    assert 0.5 < (out.inst > 0).sum() / (layout.inst > 0).sum() < 1.5
    assert not np.array_equal(out.inst > 0, layout.inst > 0)


def test_real_source_is_reproducible_per_item(samples):
    src = RealMaskSource(samples, edits=("dihedral", "elastic", "replace"), size=(64, 64), seed=3)
    again = RealMaskSource(samples, edits=("dihedral", "elastic", "replace"), size=(64, 64), seed=3)
    assert isinstance(src, MaskSource)
    forward = list(src.records(0, 6))
    # Any access order, any process: item i depends only on (seed, i).
    for i in (5, 2, 0):
        assert np.array_equal(again[i].inst, forward[i].inst) and again(i).inst_types == forward[i].inst_types
    for r in forward:
        assert isinstance(r, MaskRecord) and r.shape == (64, 64) and r.source == "real"
        r.validate()
    other_seed = RealMaskSource(samples, edits=("dihedral", "elastic", "replace"), size=(64, 64), seed=4)
    assert not np.array_equal(other_seed[0].inst, forward[0].inst)


def test_real_source_uses_every_sample_once_per_pass(samples):
    src = RealMaskSource(samples, edits=(), seed=0)
    first_pass = [r.meta["mask_origin"] for r in src.records(0, 4)]
    second_pass = [r.meta["mask_origin"] for r in src.records(4, 8)]
    assert sorted(first_pass) == sorted(second_pass) == sorted(s.name for s in samples)
    record = src[0]
    original = next(s for s in samples if s.name == record.meta["mask_origin"])
    assert np.array_equal(record.inst, original.inst)  # no edits: the annotation as it is
    # The colour condition of the source image travels with the mask.
    assert record.colour.shape == (6,) and record.colour[:3].mean() < record.colour[3:].mean()


def _two_halves_sample():
    """A 64x64 tile: red background on the left, blue on the right; type-1 nuclei are dark
    grey and type-2 nuclei light grey, one of each type on each side."""
    from synthaug.data import Sample

    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 0, 0)
    image[:, 32:] = (0, 0, 200)
    inst = np.zeros((64, 64), np.int32)
    types = np.zeros((64, 64), np.uint8)
    for i, (y, x, t) in enumerate([(8, 8, 1), (40, 8, 2), (8, 40, 1), (40, 40, 2)], start=1):
        inst[y : y + 10, x : x + 10] = i
        types[y : y + 10, x : x + 10] = t
        image[y : y + 10, x : x + 10] = 40 if t == 1 else 160
    inst_types = {1: 1, 2: 2, 3: 1, 4: 2}
    return Sample(image=image, inst=inst, types=types, inst_types=inst_types, meta={}, name="halves")


def test_real_source_colour_is_measured_on_the_cropped_window():
    from synthaug.data import Sample

    # No nuclei; red = 2 * column, so a window's background red names the window's position.
    image = np.zeros((32, 64, 3), np.uint8)
    image[..., 0] = 2 * np.arange(64)
    empty = np.zeros((32, 64), np.int32)
    sample = Sample(image=image, inst=empty, types=empty.astype(np.uint8), meta={}, name="ramp")
    src = RealMaskSource([sample], edits=(), size=(32, 30), seed=0)
    offsets = set()
    for record in src.records(0, 12):
        x0 = record.colour[3] * 255 / 2 - 14.5  # mean of 2 * (x0 .. x0 + 29) is 2 * (x0 + 14.5)
        assert abs(x0 - round(x0)) < 1e-3 and 0 <= round(x0) <= 34
        offsets.add(round(x0))
        assert not record.colour[:3].any()  # no nuclei: nothing to paint in the fg half
    assert len(offsets) > 3  # windows differ, and each carries its own colour
    whole = RealMaskSource([sample], edits=(), seed=0)[0].colour
    np.testing.assert_allclose(whole[3], 63 / 255, atol=1e-6)


def test_real_source_fg_colour_follows_the_type_mix_of_the_edited_layout():
    sample = _two_halves_sample()
    plain = RealMaskSource([sample], edits=(), seed=0)[0].colour
    np.testing.assert_allclose(plain[:3], (40 + 160) / 2 / 255, atol=1e-6)  # two nuclei of each type
    copy_light = ReplaceInstancesEdit(type=2, mode="copy", fraction=1.0)
    record = RealMaskSource([sample], edits=(copy_light,), seed=0)[0]
    light = (record.types == 2).sum() / (record.inst > 0).sum()
    assert light > 0.5  # the copies raised the type-2 share ...
    expected = (light * 160 + (1 - light) * 40) / 255
    np.testing.assert_allclose(record.colour[:3], expected, atol=1e-5)  # ... and the requested fg colour


def test_real_source_argument_errors(samples):
    with pytest.raises(ValueError, match="samples"):
        RealMaskSource([])
    with pytest.raises(TypeError, match="samples"):
        RealMaskSource([np.zeros((4, 4))])
    with pytest.raises(ValueError, match="unknown edit 'blur'"):
        RealMaskSource(samples, edits=("blur",))
    with pytest.raises(ValueError, match="size"):
        RealMaskSource(samples, size=(96, 96))
    with pytest.raises(IndexError):
        RealMaskSource(samples)[-1]


def test_layout_source(samples):
    src = LayoutMaskSource(48, 48, seed=1, meta={"tissue": "colon"}, type_shares={"epithelial": 1.0})
    a, b = src[3], LayoutMaskSource(48, 48, seed=1, type_shares={"epithelial": 1.0})[3]
    assert np.array_equal(a.inst, b.inst) and a.meta["tissue"] == "colon" and a.source == "layout"
    assert set(a.inst_types.values()) <= {3}
    with pytest.raises(TypeError, match="densty"):
        LayoutMaskSource(48, 48, densty=0.2)
    with pytest.raises(ValueError, match="density"):
        LayoutMaskSource(48, 48, density=2.0)


@pytest.mark.realdata
def test_real_consep_masks_stay_valid_under_edits(consep_root):
    from PIL import Image
    from scipy.io import loadmat

    from synthaug.data import Sample

    samples = []
    for mat_path in sorted((consep_root / "Train" / "Labels").glob("*.mat"))[:3]:
        mat = loadmat(mat_path)
        image_path = consep_root / "Train" / "Images" / f"{mat_path.stem}.jpg"
        image = np.asarray(Image.open(image_path).convert("RGB"))
        inst_types = {i + 1: int(t) for i, t in enumerate(mat["inst_type"].ravel())}
        samples.append(Sample(image, mat["inst_map"], mat["type_map"], inst_types, name=mat_path.stem))
    src = RealMaskSource(samples, edits=("dihedral", "elastic", ReplaceInstancesEdit("epithelial", "copy")),
                         size=(128, 128), seed=0, vocabulary=CONSEP_TYPES)  # fmt: skip
    for record in src.records(0, 6):
        record.validate()
        assert record.num_instances > 0


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1), h=st.integers(1, 20), w=st.integers(1, 20),
    gap=st.integers(0, 2), trials=st.sampled_from([1, 256]),
)
def test_free_anchor_is_free_and_found_whenever_one_exists(seed, h, w, gap, trials):
    rng = np.random.default_rng(seed)
    inst = generate_layout(48, 48, density=0.45, seed=rng).inst
    shape = rng.random((h, w)) < 0.8
    shape[0, 0] = True
    grown = inst > 0
    if gap:
        grown = ndimage.binary_dilation(grown, structure=np.ones((3, 3), bool), iterations=gap)
    # Brute force over every corner: where would the shape touch (or come within `gap` of) a nucleus?
    blocked = signal.correlate(grown.astype(float), shape.astype(float), "valid", method="direct") > 0.5
    anchor = find_free_anchor(inst, shape, rng=rng, gap=gap, trials=trials)
    if anchor is None:
        assert blocked.all()
    else:
        assert not blocked[anchor]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ElasticEdit(alpha=-1.0), "alpha"),
        (lambda: CropEdit(0, 10), "height"),
        (lambda: ReplaceInstancesEdit(mode="swap"), "mode"),
        (lambda: ReplaceInstancesEdit(fraction=0.0), "fraction"),
        (lambda: ReplaceInstancesEdit(type="goblet", vocabulary=CONSEP_TYPES), "type"),
        (lambda: ReplaceInstancesEdit(type=0), "type"),
    ],
)
def test_edit_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
