"""Every reader on toy files in its format: what it reads back, auto-detection, and malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from synthaug.data import DatasetReader, available_readers, get_reader, open_dataset, register_reader
from synthaug.data.readers.consep import ORIGINAL_TO_MERGED
from tests.data import toys


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two instance masks label the same pixel sets (ids may differ)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


def check_sample(sample, image, inst, table, *, exact_image=True):
    assert same_partition(sample.inst, inst)
    assert np.array_equal(sample.types, toys.type_map(inst, table))
    assert set(sample.inst_types) == set(range(1, len(table) + 1))  # compact ids
    if exact_image:
        assert np.array_equal(sample.image, image)


def test_registry_lists_and_rejects_unknown_names():
    assert {"consep", "pannuke", "lizard", "conic", "monuseg", "folder", "pcam"} <= set(available_readers())
    with pytest.raises(ValueError, match="available readers: .*consep"):
        get_reader("kumar")
    with pytest.raises(ValueError, match="already registered"):
        register_reader("consep")(type("Other", (DatasetReader,), {}))


def test_consep_original_layout_merges_seven_classes(tmp_path):
    written = toys.write_consep_original(tmp_path, {"train": 2, "test": 1})
    reader = open_dataset(tmp_path)
    assert reader.name == "consep" and reader.layout == "tiles"
    assert reader.splits() == ["train", "test"]
    samples = reader.load("train")
    assert [s.name for s in samples] == ["train_1", "train_2"]
    for sample in samples:
        image, inst, table = written[sample.name]
        merged = {k: ORIGINAL_TO_MERGED[t] for k, t in table.items()}
        check_sample(sample, image, inst, merged)
        assert sample.meta["tissue"] == "colon" and sample.meta["source"] == "CoNSeP"
        assert sample.group == sample.name


def test_consep_type_names_and_columnar_alias(tmp_path):
    toys.write_consep_original(tmp_path, {"train": 1})
    reader = open_dataset(tmp_path, reader="consep")
    assert reader.type_names == {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    vocabulary = reader.vocabulary
    assert vocabulary.resolve("columnar") == vocabulary.resolve("Epithelial") == vocabulary.resolve(3) == 3
    with pytest.raises(ValueError, match="use one of 1 \\(other\\)"):
        vocabulary.resolve("neutrophil")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        reader.load("valid")


def test_consep_patch_layout_groups_by_tile_and_stitches(tmp_path):
    tiles = toys.write_consep_patches(tmp_path, {"train": 2, "test": 1})
    reader = open_dataset(tmp_path)
    assert reader.layout == "patches"
    train = reader.load("train")
    assert len(train) == 8
    assert {s.group for s in train} == {"train_1", "train_2"}
    stitched = reader.stitch_tile("train", "train_2")
    image, inst, table = tiles["train_2"]
    check_sample(stitched, image, inst, table)  # nuclei cut by patch borders are whole again
    with pytest.raises(ValueError, match="no patches of tile"):
        reader.stitch_tile("train", "test_1")
    whole = reader.load_tiles("train")  # every tile of the split, stitched
    assert [t.name for t in whole] == ["train_1", "train_2"]
    np.testing.assert_array_equal(whole[1].inst, stitched.inst)
    assert whole[1].inst_types == stitched.inst_types


def test_consep_original_layout_tiles_are_its_samples(tmp_path):
    toys.write_consep_original(tmp_path, {"test": 2})
    reader = open_dataset(tmp_path, reader="consep")
    assert [t.name for t in reader.load_tiles("test")] == [s.name for s in reader.load("test")]


def test_readers_without_tiles_refuse_whole_tiles_naming_the_fix(tmp_path):
    toys.write_folder(tmp_path)
    with pytest.raises(ValueError, match="knows no tiles to stitch .* score its samples as they are"):
        open_dataset(tmp_path).load_tiles("train")


def test_consep_table_id_missing_from_mask_names_the_file(tmp_path):
    toys.write_consep_original(tmp_path, {"train": 1})
    path = tmp_path / "Train" / "Labels" / "train_1.mat"
    _, inst, table = toys.toy_tile(1, num_types=7)
    extra = np.array([[t] for t in table.values()] + [[2]], np.float64)  # one row too many
    savemat(path, {"inst_map": inst.astype(np.float64), "inst_type": extra})
    reader = open_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"train_1\.mat.*missing from the instance mask"):
        reader.load("train")
    with pytest.warns(UserWarning, match="dropped"):
        assert len(open_dataset(tmp_path, strict=False).load("train")) == 1


def test_consep_wrong_shape_and_corrupt_image_are_named(tmp_path):
    toys.write_consep_original(tmp_path, {"train": 1, "test": 1})
    savemat(tmp_path / "Test" / "Labels" / "test_1.mat", {"inst_map": np.ones((5, 5)), "inst_type": [[1]]})
    (tmp_path / "Train" / "Images" / "train_1.png").write_bytes(b"\x89PNG not really")
    reader = open_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"train_1\.png.*cannot decode"):
        reader.load("train")
    with pytest.raises(ValueError, match=r"test_1\.mat.*\(5, 5\).*same height and width"):
        reader.load("test")


def test_consep_unknown_class_and_missing_key(tmp_path):
    toys.write_consep_original(tmp_path, {"train": 1, "test": 1})
    savemat(
        tmp_path / "Train" / "Labels" / "train_1.mat", {"inst_map": np.ones((48, 48)), "inst_type": [[9]]}
    )
    savemat(tmp_path / "Test" / "Labels" / "test_1.mat", {"inst_map": np.ones((48, 48))})
    reader = open_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"classes \[9\]"):
        reader.load("train")
    with pytest.raises(ValueError, match=r"test_1\.mat: missing variable\(s\) \['inst_type'\]"):
        reader.load("test")


def test_pannuke_merges_type_channels(tmp_path):
    written = toys.write_pannuke(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "pannuke" and reader.splits() == ["fold1"]
    samples = reader.load("fold1")
    assert [s.meta["tissue"] for s in samples] == ["colon", "adrenal gland", "breast"]
    for sample, (image, inst, table) in zip(samples, written):
        check_sample(sample, image, inst, table)
    # PanNuke's own ids: epithelial is 5 here (3 is connective), whatever CoNSeP says
    assert reader.vocabulary.resolve("tumour") == 1 and reader.vocabulary.resolve("epithelial") == 5


def test_pannuke_mask_shape_mismatch(tmp_path):
    toys.write_pannuke(tmp_path)
    path = tmp_path / "Fold 1" / "masks" / "fold1" / "masks.npy"
    np.save(path, np.zeros((3, 32, 32, 5)))
    with pytest.raises(ValueError, match=r"masks\.npy: expected shape \(3, 32, 32, 6\)"):
        open_dataset(tmp_path).load("fold1")


def test_conic_groups_by_source_image(tmp_path):
    written = toys.write_conic(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "conic"
    samples = reader.load("all")
    assert [s.group for s in samples] == ["consep_1", "consep_1", "crag_2"]
    for sample, (image, inst, table) in zip(samples, written):
        check_sample(sample, image, inst, table)


def test_conic_wrong_label_shape(tmp_path):
    toys.write_conic(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros((3, 32, 32), np.int32))
    with pytest.raises(ValueError, match=r"labels\.npy: expected shape \(3, 32, 32, 2\)"):
        open_dataset(tmp_path).load("all")


def test_lizard_reads_sparse_ids_and_folds(tmp_path):
    written = toys.write_lizard(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "lizard" and reader.splits() == ["fold1", "fold2"]
    (sample,) = reader.load("fold2")
    image, inst, table = written["glas_3"]
    assert sample.name == "glas_3"
    assert same_partition(sample.inst, inst)
    assert sorted(sample.inst_types.values()) == sorted(table.values())


def test_lizard_mask_id_without_class_is_an_error(tmp_path):
    toys.write_lizard(tmp_path)
    _, inst, _ = toys.toy_tile(400)
    savemat(
        tmp_path / "Lizard_Labels" / "Labels" / "consep_1.mat",
        {"inst_map": inst, "id": [[1]], "class": [[2]]},
    )
    with pytest.raises(ValueError, match=r"consep_1\.mat.*no entry in the type table"):
        open_dataset(tmp_path).load("fold1")


def test_monuseg_polygons_become_instances(tmp_path):
    written = toys.write_monuseg(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "monuseg" and reader.splits() == ["test", "train"]
    (sample,) = reader.load("train")
    assert sample.name == "TCGA-A" and set(sample.inst_types.values()) == {1}
    # the toy outlines are rectangles with inclusive corners, which skimage.draw.polygon fills exactly
    assert same_partition(sample.inst, written["TCGA-A"])


def test_monuseg_malformed_xml(tmp_path):
    toys.write_monuseg(tmp_path)
    (tmp_path / "MoNuSegTestData" / "TCGA-B.xml").write_text("<Annotations><Region>")
    with pytest.raises(ValueError, match=r"TCGA-B\.xml: not well-formed XML"):
        open_dataset(tmp_path).load("test")


def test_folder_reader_with_types_metadata_and_splits(tmp_path):
    written = toys.write_folder(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "folder" and reader.splits() == ["test", "train"]
    assert reader.type_names == {1: "tumour", 2: "lymphocyte"}
    train = reader.load("train")
    assert [s.name for s in train] == ["img0", "img1"]
    assert {s.group for s in train} == {"slide0"} and train[0].meta == {"tissue": "kidney"}
    for sample in train:
        image, inst, table = written[sample.name]
        check_sample(sample, image, inst, table, exact_image=False)  # JPEG
        assert np.abs(sample.image.astype(int) - image).mean() < 8


def test_folder_reader_label_images_without_types(tmp_path):
    written = toys.write_folder(tmp_path, with_types=False)
    (tmp_path / "classes.json").unlink()
    reader = open_dataset(tmp_path)
    sample = reader.load("test")[0]
    assert same_partition(sample.inst, written["img2"][1])
    assert set(sample.inst_types.values()) == {1} and reader.type_names == {1: "nucleus"}


def test_folder_reader_split_subfolders(tmp_path):
    for split in ("train", "test"):
        toys.write_folder(tmp_path / split, with_types=False)
        (tmp_path / split / "metadata.csv").unlink()
        (tmp_path / split / "classes.json").unlink()
    reader = open_dataset(tmp_path)
    assert reader.name == "folder" and reader.splits() == ["test", "train"]
    assert [s.name for s in reader.load("test")] == ["img0", "img1", "img2"]


def test_folder_reader_needs_names_for_every_type(tmp_path):
    toys.write_folder(tmp_path)
    (tmp_path / "classes.json").write_text('{"1": "tumour"}')
    with pytest.raises(ValueError, match=r"type id\(s\) \[2\] have no name.*classes\.json"):
        open_dataset(tmp_path).load("train")


def test_folder_reader_mismatched_label(tmp_path):
    toys.write_folder(tmp_path)
    np.save(tmp_path / "labels" / "img2.npy", np.zeros((10, 10), np.int32))
    with pytest.raises(ValueError, match=r"img2\.npy: mask is \(10, 10\)"):
        open_dataset(tmp_path).load("test")


def test_pcam_is_label_level(tmp_path):
    toys.write_pcam(tmp_path)
    reader = open_dataset(tmp_path)
    assert reader.name == "pcam" and reader.splits() == ["train", "valid", "test"]
    samples = reader.load("train")
    assert [s.meta["label"] for s in samples] == ["normal", "tumour", "normal", "tumour"]
    assert all(s.inst.max() == 0 and s.types.max() == 0 and s.inst_types == {} for s in samples)
    assert samples[0].meta["tissue"] == "lymph node"
    with pytest.raises(ValueError, match="no types"):
        reader.vocabulary.resolve("tumour")


def test_pcam_bad_label(tmp_path):
    toys.write_pcam(tmp_path)
    text = (tmp_path / "labels.csv").read_text().replace(",1,train", ",2,train", 1)
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match=r"labels\.csv line 3: label must be 0"):
        open_dataset(tmp_path)


def test_open_dataset_unknown_layout_lists_expectations(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="no reader recognises.*consep: Train/"):
        open_dataset(tmp_path)
    with pytest.raises(ValueError, match="existing dataset folder"):
        open_dataset(tmp_path / "absent")
