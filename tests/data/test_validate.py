"""build_sample / compact_instances agreement checks and the shared file readers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from synthaug.data import build_sample, compact_instances
from synthaug.data.io import load_mat, read_label_image, read_rgb

CONSEP_TYPES = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}


def make(inst, table, **kwargs):
    image = np.zeros((*np.shape(inst), 3), np.uint8)
    kwargs.setdefault("valid_types", CONSEP_TYPES)
    return build_sample(image, np.asarray(inst), table, meta={}, name="s", where="tile.mat", **kwargs)


def test_compact_instances_keeps_order_and_types():
    inst = np.array([[0, 7, 7], [42, 0, 3]])
    compact, table = compact_instances(inst, {3: 1, 7: 2, 42: 4, 99: 3})
    assert compact.dtype == np.int32
    assert np.array_equal(compact, [[0, 2, 2], [3, 0, 1]])
    assert table == {1: 1, 2: 2, 3: 4}  # 99 is not in the mask and is dropped


@settings(max_examples=40, deadline=None)
@given(
    inst=arrays(np.int64, (12, 10), elements=st.sampled_from([0, 0, 3, 9, 250, 70_000])),
    seed=st.integers(0, 99),
)
def test_build_sample_keeps_every_pixel_and_type(inst, seed):
    ids = np.unique(inst[inst > 0])
    rng = np.random.default_rng(seed)
    table = {int(k): int(rng.integers(1, 5)) for k in ids}
    sample = make(inst, table)
    # same pixel sets under new ids 1..N, in the order of the old ids
    assert np.array_equal(np.searchsorted(np.concatenate([[0], ids]), inst), sample.inst)
    expected = np.zeros(inst.shape, np.uint8)
    for k, t in table.items():
        expected[inst == k] = t
    assert np.array_equal(sample.types, expected)


def test_build_sample_paints_types_from_table():
    sample = make([[0, 5, 5], [9, 0, 0]], {5: 3, 9: 2})
    assert np.array_equal(sample.inst, [[0, 1, 1], [2, 0, 0]])
    assert np.array_equal(sample.types, [[0, 3, 3], [2, 0, 0]])
    assert sample.inst_types == {1: 3, 2: 2}


def test_build_sample_errors_name_the_file_and_mismatch():
    with pytest.raises(ValueError, match=r"tile\.mat: 1 id\(s\) of the type table are missing .*\[8\]"):
        make([[0, 5]], {5: 1, 8: 2})
    with pytest.raises(ValueError, match=r"tile\.mat: 1 instance id\(s\) of the mask have no entry .*\[9\]"):
        make([[9, 5]], {5: 1})
    with pytest.raises(ValueError, match=r"tile\.mat: type id\(s\) \[7\] are not among"):
        make([[0, 5]], {5: 7})
    with pytest.raises(
        ValueError, match=r"tile\.mat: the instance mask is \(1, 2\) but the image is \(3, 3\)"
    ):
        build_sample(
            np.zeros((3, 3, 3), np.uint8),
            np.ones((1, 2), int),
            None,
            valid_types=[1],
            meta={},
            name="s",
            where="tile.mat",
        )
    with pytest.raises(ValueError, match="non-integer"):
        make(np.array([[0.5, 1.0]]), {1: 1})


def test_build_sample_without_table_types_every_nucleus_one():
    sample = make([[0, 4], [4, 6]], None, valid_types=[1])
    assert sample.inst_types == {1: 1, 2: 1}


def test_read_rgb_converts_rgba_and_names_corrupt_files(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_rgb(tmp_path / "a.png")
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8 and (image[..., 0] == 200).all()
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"b\.jpg: cannot decode"):
        read_rgb(tmp_path / "b.jpg")
    with pytest.raises(ValueError, match=r"c\.png: image file not found"):
        read_rgb(tmp_path / "c.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "d.png")
    with pytest.raises(ValueError, match="not 8-bit"):
        read_rgb(tmp_path / "d.png")


def test_read_label_image_and_load_mat_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[0.0, 1.5]]))
    with pytest.raises(ValueError, match=r"f\.npy: float labels with non-integer"):
        read_label_image(tmp_path / "f.npy")
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "g.png")
    assert read_label_image(tmp_path / "g.png").tolist() == [[0, 300]]  # 16-bit ids survive
    (tmp_path / "h.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"h\.mat: cannot read the \.mat file"):
        load_mat(tmp_path / "h.mat", ["inst_map"])


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64)).save(path)
    # PIL raises DecompressionBombError above 2x MAX_IMAGE_PIXELS: lower the limit, not the file size
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for reader in (read_rgb, read_label_image):
        with pytest.raises(ValueError, match=r"huge\.png: PIL refused the image as a possible decompression"):
            reader(path)
