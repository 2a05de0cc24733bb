"""The real CoNSeP patches and PCam subset in ../shared/data (skipped when absent).

The 656 CoNSeP patches are read once per session; every test below reuses them.
"""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.data import BenchmarkSplit, count_instances, open_dataset, scarcity_scenario

pytestmark = pytest.mark.realdata

# ../shared/data/consep/README.md, "Counts" (patch-level nuclei)
README_COUNTS = {
    "train": {"other": 432, "inflammatory": 4507, "epithelial": 6609, "spindle": 6668},
    "test": {"other": 658, "inflammatory": 1879, "epithelial": 3844, "spindle": 3949},
}


@pytest.fixture(scope="session")
def consep_reader(consep_root):
    return open_dataset(consep_root, progress=False)


@pytest.fixture(scope="session")
def consep_split(consep_reader):
    return BenchmarkSplit.from_reader(consep_reader)


def test_consep_patch_and_tile_counts(consep_split):
    assert len(consep_split.train) == 432 and len(consep_split.test) == 224
    assert len({s.group for s in consep_split.train}) == 27
    assert len({s.group for s in consep_split.test}) == 14
    assert {s.group for s in consep_split.train}.isdisjoint({s.group for s in consep_split.test})


@pytest.mark.parametrize("split", ["train", "test"])
def test_consep_class_counts_match_readme(consep_split, consep_reader, split):
    counts = count_instances(getattr(consep_split, split))
    assert {consep_reader.type_names[k]: v for k, v in counts.items()} == README_COUNTS[split]


def test_consep_samples_are_well_formed(consep_split):
    sample = consep_split.train[0]
    assert sample.image.shape == (256, 256, 3) and sample.image.dtype == np.uint8
    assert sample.meta == {
        "tissue": "colon",
        "indication": "colorectal adenocarcinoma",
        "assay": "H&E",
        "source": "CoNSeP",
    }
    for s in consep_split.test[:20]:
        ids = np.unique(s.inst[s.inst > 0])
        assert ids.tolist() == sorted(s.inst_types)
        # nuclei are darker than background in every patch (README)
        assert s.image[s.inst > 0].mean() < s.image[s.inst == 0].mean()


def test_consep_stitched_tile_merges_border_nuclei(consep_reader, consep_split):
    tile = consep_reader.stitch_tile("test", "test_1")
    patches = [s for s in consep_split.test if s.group == "test_1"]
    assert tile.shape == (1024, 1024) and len(patches) == 16
    # nuclei cut by a patch border count once in the tile but once per patch in the patches
    assert len(tile.inst_types) < sum(len(p.inst_types) for p in patches)
    assert np.array_equal(tile.image[:256, 256:512], patches[1].image)
    tiles = consep_reader.load_tiles("test")
    # the data README's count of distinct test nuclei (by their tile uid)
    assert len(tiles) == 14 and sum(len(t.inst_types) for t in tiles) == 8777


def test_consep_rare_epithelium_scenario(consep_split, tmp_path):
    rare = scarcity_scenario(consep_split, rare_type="epithelial", target_share=0.1, seed=0)
    counts = count_instances(rare.train)
    assert counts[3] / sum(counts.values()) <= 0.1
    assert len(rare.test) == 224
    rare.check_training_only(rare.train)
    with pytest.raises(ValueError, match="not in this benchmark's training split"):
        rare.check_training_only(consep_split.test[:1])
    manifest = rare.save(tmp_path / "split.json")
    assert "test_1_000" in manifest.read_text()


def test_pcam_label_level(pcam_root):
    reader = open_dataset(pcam_root, progress=False)
    assert reader.name == "pcam" and reader.splits() == ["train", "valid", "test"]
    valid = reader.load("valid")
    labels = [s.meta["label"] for s in valid]
    assert len(valid) == 500 and labels.count("tumour") == labels.count("normal") == 250
    assert valid[0].image.shape == (96, 96, 3) and valid[0].inst.max() == 0
