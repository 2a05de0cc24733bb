"""SyntheticCache: round trips, commit visibility, pickling, refusal of foreign or incompatible stores."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from synthaug.sampling.cache import HEADER_KEY, SyntheticCache, merge_ranges, type_counts

H, W, T = 16, 12, 3


def _batch(b: int, seed: int):
    """``b`` random samples: two square nuclei of random types per tile."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (b, H, W, 3), dtype=np.uint8)
    inst = np.zeros((b, H, W), np.int32)
    inst[:, 1:5, 1:5] = 1
    inst[:, 8:14, 6:11] = 7  # labels need not be contiguous
    types = np.zeros((b, H, W), np.uint8)
    for k in range(b):
        t1, t2 = rng.integers(1, T + 1, 2)
        types[k][inst[k] == 1] = t1
        types[k][inst[k] == 7] = t2
    meta = [{"seed": [seed, k], "text": f"tile {k}"} for k in range(b)]
    return {"image": image, "inst": inst, "type": types, "meta": meta}


@pytest.fixture(params=["memory", "local"])
def url(request, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://cache-{uuid.uuid4().hex}"
    return str(tmp_path / "cache.zarr")


def test_round_trip_keeps_bytes_meta_and_counts(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T, attrs={"prompt": "colon"})
    first, second = _batch(3, seed=0), _batch(2, seed=1)
    assert cache.append(**first) == (0, 3)
    assert cache.append(**second) == (3, 5)

    reopened = SyntheticCache.open(url)
    assert (len(reopened), reopened.height, reopened.width, reopened.num_types) == (5, H, W, T)
    assert reopened.attrs == {"prompt": "colon"}
    sample = reopened.read(4)
    np.testing.assert_array_equal(sample["image"], second["image"][1])
    np.testing.assert_array_equal(sample["inst"], second["inst"][1])
    np.testing.assert_array_equal(sample["type"], second["type"][1])
    assert sample["meta"] == {"seed": [1, 1], "text": "tile 1"}
    dtypes = (sample["image"].dtype, sample["inst"].dtype, sample["type"].dtype)
    assert dtypes == (np.uint8, np.int32, np.uint8)

    types = np.concatenate([first["type"], second["type"]])
    expected_pixels = np.stack([np.bincount(t.ravel(), minlength=T + 1) for t in types])
    np.testing.assert_array_equal(reopened.type_pixel_counts(), expected_pixels)
    # two nuclei per tile, each counted under its own type
    instances = reopened.type_instance_counts()
    assert instances.shape == (5, T + 1) and instances.dtype == np.int64
    assert (instances.sum(axis=1) == 2).all() and (instances[:, 0] == 0).all()
    with pytest.raises(IndexError, match="5 committed"):
        reopened.read(5)


def test_written_samples_stay_invisible_until_committed(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.claim([(0, 4)])
    start, stop = cache.write(0, **_batch(4, seed=2))
    assert len(SyntheticCache.open(url)) == 0 and len(cache) == 0
    cache.commit(start, stop)
    assert len(SyntheticCache.open(url)) == 4


def test_writer_records_become_visible_after_consolidation(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.reserve(6)
    # two "ranks" write disjoint ranges, the second finishing first
    other = SyntheticCache.open(url, mode="a")
    other.claim([(3, 6)])
    cache.claim([(0, 3)])
    other.commit(*other.write(3, **_batch(3, seed=4)), writer="rank-1")
    cache.commit(*cache.write(0, **_batch(3, seed=3)), writer="rank-0")
    assert len(SyntheticCache.open(url)) == 0
    assert cache.committed_ranges() == [(0, 6)]
    assert cache.consolidate() == 6
    np.testing.assert_array_equal(SyntheticCache.open(url).read(5)["image"], _batch(3, seed=4)["image"][2])


def test_a_hole_hides_later_samples(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.reserve(4)
    cache.claim([(0, 4)])
    cache.commit(*cache.write(2, **_batch(2, seed=5)))
    assert len(cache) == 0 and cache.committed_ranges() == [(2, 4)]
    with pytest.raises(ValueError, match=r"append would overwrite"):
        cache.append(**_batch(1, seed=6))
    cache.commit(*cache.write(0, **_batch(2, seed=6)))
    assert len(cache) == 4


def test_pickles_as_its_address_and_opens_lazily(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.append(**_batch(2, seed=7))
    assert set(cache.__getstate__()) == {"url", "mode", "model_hash", "storage_options"}
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._group is None
    np.testing.assert_array_equal(clone.read(1)["inst"], cache.read(1)["inst"])


def test_header_records_class_names_and_refuses_other_ones_on_reuse(tmp_path: Path):
    url = str(tmp_path / "named.zarr")
    names = {1: "other", 2: "inflammatory", 3: "epithelial"}
    assert SyntheticCache.create(url, height=H, width=W, num_types=T, type_names=names).type_names == names
    assert SyntheticCache.open(url).type_names == names  # survives the JSON header (string keys)
    with pytest.raises(ValueError, match="records types"):
        SyntheticCache.create(url, height=H, width=W, num_types=T, type_names={1: "dead"}, exist_ok=True)
    with pytest.raises(ValueError, match=r"`type_names id` must be an integer in \[1, 3\]"):
        SyntheticCache.create(str(tmp_path / "bad.zarr"), height=H, width=W, num_types=T, type_names={5: "x"})
    assert not (tmp_path / "bad.zarr").exists()
    plain = SyntheticCache.create(str(tmp_path / "plain.zarr"), height=H, width=W, num_types=T)
    assert plain.type_names is None


def test_refuses_incompatible_or_foreign_stores(tmp_path: Path):
    url = str(tmp_path / "c.zarr")
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T, model_hash="sha256:aaa")
    with pytest.raises(ValueError, match=r"'sha256:aaa'.*'sha256:bbb'"):
        SyntheticCache.open(url, model_hash="sha256:bbb")
    with pytest.raises(ValueError, match="already holds a store"):
        SyntheticCache.create(url, height=H, width=W, num_types=T)
    with pytest.raises(ValueError, match="height=16 but height=32"):
        SyntheticCache.create(url, height=32, width=W, num_types=T, exist_ok=True)
    assert len(SyntheticCache.create(url, height=H, width=W, num_types=T, exist_ok=True)) == 0

    header = dict(cache.header, schema_version=99)
    zarr.open_group(url, mode="a").attrs[HEADER_KEY] = header
    with pytest.raises(ValueError, match="schema version 99.*schema version 2"):
        SyntheticCache.open(url)

    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").create_array("x", shape=(2,), dtype="f4")
    with pytest.raises(ValueError, match="not a synthaug cache"):
        SyntheticCache.open(str(foreign))
    with pytest.raises(ValueError, match="already holds a store"):
        SyntheticCache.create(str(foreign), height=H, width=W, num_types=T, exist_ok=False)

    broken = tmp_path / "broken.zarr"
    SyntheticCache.create(str(broken), height=H, width=W, num_types=T)
    (broken / "zarr.json").write_text("{ not json")
    with pytest.raises(ValueError, match="corrupted"):
        SyntheticCache.open(str(broken))

    with pytest.raises(ValueError, match="no synthaug cache"):
        SyntheticCache.open(str(tmp_path / "missing.zarr"))


def test_write_validates_its_arguments():
    cache = SyntheticCache.create(f"memory://v-{uuid.uuid4().hex}", height=H, width=W, num_types=T)
    good = _batch(2, seed=8)
    with pytest.raises(ValueError, match="`image` must be uint8"):
        cache.append(**{**good, "image": good["image"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"`type` must be integers in \[0, 3\]"):
        cache.append(**{**good, "type": good["type"] + 4})
    with pytest.raises(ValueError, match="`meta` must be a sequence of 2"):
        cache.append(**{**good, "meta": good["meta"][:1]})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        SyntheticCache.create(f"memory://v-{uuid.uuid4().hex}", height=H, width=W, num_types=T,
                              attrs={"a": np.zeros(2)})
    reader = SyntheticCache.open(cache.url)
    with pytest.raises(ValueError, match="read-only"):
        reader.append(**good)
    assert len(cache) == 0


def test_meta_is_stored_as_json_not_pickle(tmp_path: Path):
    url = str(tmp_path / "j.zarr")
    SyntheticCache.create(url, height=H, width=W, num_types=T).append(**_batch(1, seed=9))
    root = json.loads((tmp_path / "j.zarr" / "zarr.json").read_text())
    assert root["attributes"]["synthaug_commit"]["num_samples"] == 1
    stored = zarr.open_array(url + "/meta", mode="r")[0]
    assert json.loads(stored.item()) == _batch(1, seed=9)["meta"][0]


def test_type_counts_uses_the_package_wide_instance_type_vote():
    from synthaug.augment._paste import paste_instances  # noqa: F401 - pastes by the same vote
    from synthaug.conditions import instance_types_from_type_map
    from synthaug.metrics import instance_classes

    inst = np.array([[1, 1, 1, 0], [2, 2, 3, 3]], np.int32)
    types = np.array([[2, 2, 1, 0], [0, 3, 0, 0]], np.uint8)
    pixels, instances = type_counts(inst, types, 3)
    np.testing.assert_array_equal(pixels, [4, 1, 2, 1])
    # 1 -> type 2 (2 of 3 pixels); 2 -> type 3 (its one typed pixel: background does not vote);
    # 3 -> 0 (no typed pixel). The conditions, the metrics and the cache agree.
    np.testing.assert_array_equal(instances, [1, 0, 1, 1])
    assert instance_types_from_type_map(inst, types) == {1: 2, 2: 3, 3: 0}
    assert instance_classes(inst, types)[1].tolist() == [2, 3, 0]


def test_merge_ranges_unions_overlapping_and_touching_ranges():
    assert merge_ranges([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]


def test_reading_a_cache_does_not_import_the_diffusion_stack():
    # Training a segmenter from a finished cache must not need diffusers (DEVELOPERS.md contract).
    code = "import sys, synthaug.sampling; sys.exit('diffusers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_append_samples_stores_each_record_as_given(url: str):
    from synthaug.data.toy import make_toy_samples

    tiles = make_toy_samples(3, 32, 32, seed=5)
    cache = SyntheticCache.create(url, height=32, width=32, num_types=4)
    assert cache.append_samples(tiles) == (0, 3)
    for i, tile in enumerate(tiles):
        pair = cache.read(i)
        assert np.array_equal(pair["image"], tile.image)
        assert np.array_equal(pair["inst"], tile.inst)
        assert np.array_equal(pair["type"], tile.types)
        assert pair["meta"] == tile.meta
    with pytest.raises(ValueError, match="`samples`"):
        cache.append_samples([])


def test_reading_some_fields_or_a_range_gives_the_same_values(url: str):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    batch = _batch(5, seed=3)
    cache.append(**batch)
    cache = SyntheticCache.open(url)
    part = cache.read(2, fields=("inst", "meta"))
    assert set(part) == {"inst", "meta"}
    np.testing.assert_array_equal(part["inst"], batch["inst"][2])
    assert part["meta"] == batch["meta"][2]
    block = cache.read_range(1, 4)
    for key in ("image", "inst", "type"):
        np.testing.assert_array_equal(block[key], batch[key][1:4])
    assert block["meta"] == batch["meta"][1:4]
    assert cache.read_range(5, 5, fields="type")["type"].shape == (0, H, W)


@pytest.mark.parametrize("fields", [(), ("image", "pixels"), ["label"]])
def test_unknown_fields_are_refused_with_the_valid_names(url: str, fields):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.append(**_batch(1, seed=0))
    with pytest.raises(ValueError, match="`fields` must be a non-empty subset of"):
        cache.read(0, fields=fields)


@pytest.mark.parametrize(("start", "stop"), [(-1, 1), (1, 0), (0, 3), (0.0, 1)])
def test_a_range_outside_the_committed_samples_is_refused(url: str, start, stop):
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.append(**_batch(2, seed=0))
    with pytest.raises(IndexError, match="committed samples"):
        cache.read_range(start, stop)


def _chunk(url: str, array: str, index: int) -> Path:
    """The file of sample ``index``'s chunk in a local store (zarr v3 default chunk keys)."""
    ndim = {"image": 4, "inst": 3, "type": 3, "meta": 1, "digest": 2}[array]
    return Path(url, array, "c", str(index), *["0"] * (ndim - 1))


@pytest.fixture
def local_store(tmp_path: Path) -> str:
    url = str(tmp_path / "store.zarr")
    SyntheticCache.create(url, height=H, width=W, num_types=T).append(**_batch(6, seed=3))
    return url


def test_a_deleted_chunk_is_an_error_not_a_black_tile(local_store: str):
    from synthaug.sampling.cache import CacheIntegrityError

    _chunk(local_store, "image", 2).unlink()
    cache = SyntheticCache.open(local_store)
    with pytest.raises(CacheIntegrityError, match="sample 2 field 'image' does not match its checksum"):
        cache.read(2)
    with pytest.raises(CacheIntegrityError, match="sample 2"):
        cache.read_range(0, 6)
    assert cache.read(1)["meta"] == {"seed": [3, 1], "text": "tile 1"}  # the others still read
    assert cache.read(2, fields=("inst", "meta"))["inst"].any()  # and so do its intact fields


def test_every_single_bit_flip_in_a_chunk_is_caught(local_store: str):
    from synthaug.sampling.cache import CacheIntegrityError

    path = _chunk(local_store, "image", 4)
    original = path.read_bytes()
    for position in range(0, len(original), max(1, len(original) // 20)):
        flipped = bytearray(original)
        flipped[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(CacheIntegrityError, match="sample"):
            SyntheticCache.open(local_store).read(4)
    path.write_bytes(original)
    assert SyntheticCache.open(local_store).read(4)["image"].shape == (H, W, 3)


def test_a_swapped_chunk_is_caught(local_store: str):
    from synthaug.sampling.cache import CacheIntegrityError

    a, b = _chunk(local_store, "image", 0), _chunk(local_store, "image", 5)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    with pytest.raises(CacheIntegrityError, match="sample 0 field 'image'"):
        SyntheticCache.open(local_store).read(0)


def test_a_commit_record_beyond_the_arrays_is_refused_on_open(local_store: str):
    from synthaug.sampling.cache import COMMIT_KEY, CacheIntegrityError

    group = zarr.open_group(local_store, mode="a")
    group.attrs[COMMIT_KEY] = {"num_samples": 100, "ranges": [[0, 100]]}
    with pytest.raises(CacheIntegrityError, match="samples up to 100 are committed"):
        SyntheticCache.open(local_store)
    group.attrs[COMMIT_KEY] = None
    with pytest.raises(CacheIntegrityError, match="commit record"):
        SyntheticCache.open(local_store)


def test_a_resize_killed_half_way_is_seen_and_completed(local_store: str):
    # reserve() killed after growing `image` only: capacity is the smallest array, and the next
    # reserve grows the others, so no write lands out of bounds (zarr would drop it silently).
    zarr.open_group(local_store, mode="a")["image"].resize((20, H, W, 3))
    cache = SyntheticCache.open(local_store, mode="a")
    assert cache.capacity == 6 and len(cache) == 6
    cache.reserve(20)
    assert cache.capacity == 20
    cache.append(**_batch(2, seed=9))
    assert len(SyntheticCache.open(local_store)) == 8


def test_cache_verify_lists_every_bad_sample(local_store: str, capsys):
    from synthaug.cli.main import main

    assert main(["cache", "verify", local_store]) == 0
    assert "6 committed samples checked; OK" in capsys.readouterr().out
    _chunk(local_store, "image", 1).unlink()
    flipped = bytearray(_chunk(local_store, "inst", 3).read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    _chunk(local_store, "inst", 3).write_bytes(bytes(flipped))
    a, b = _chunk(local_store, "type", 4), _chunk(local_store, "type", 5)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    report = SyntheticCache.open(local_store).verify()
    assert report["checked"] == 6 and sorted(report["bad"]) == [1, 3, 4, 5]
    assert main(["cache", "verify", local_store]) == 1
    out = capsys.readouterr().out
    assert "sample 1:" in out and "4 bad sample(s)" in out


def test_an_edited_array_shape_or_a_truncated_header_is_a_clear_error(local_store: str):
    from synthaug.sampling.cache import CacheIntegrityError

    meta = Path(local_store, "inst", "zarr.json")
    doc = json.loads(meta.read_text())
    doc["shape"] = [6, H, W + 1]
    meta.write_text(json.dumps(doc))
    with pytest.raises(CacheIntegrityError, match="array 'inst' has shape"):
        SyntheticCache.open(local_store)
    root = Path(local_store, "zarr.json")
    root.write_text(root.read_text()[:40])  # truncated JSON
    with pytest.raises(ValueError, match="could not be opened as a zarr v3 group"):
        SyntheticCache.open(local_store)
