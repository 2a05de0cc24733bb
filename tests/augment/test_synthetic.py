"""SyntheticAugment: probability, targeting, formats, randomness and errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import binom

from synthaug.augment import SyntheticAugment
from tests.augment.conftest import real_sample


def _binomial_bounds(n: int, p: float, alpha: float = 1e-6) -> tuple[float, float]:
    return binom.ppf(alpha / 2, n, p), binom.isf(alpha / 2, n, p)


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_probability_is_honoured(make_cache, prob):
    aug = SyntheticAugment(make_cache(), prob=prob).set_random_state(0)
    item = real_sample().to_dict()
    n = 300
    hits = sum(aug(item)["is_synthetic"] for _ in range(n))
    low, high = _binomial_bounds(n, prob)
    assert low <= hits <= high


def test_replace_keeps_keys_dtypes_shapes_and_pairs_image_with_masks(make_cache):
    cache = make_cache(size=48)  # larger tiles: a 32x32 window is cut
    aug = SyntheticAugment(cache, prob=1.0, crop="random").set_random_state(3)
    item = real_sample(32).to_dict()
    out = aug(item)
    assert set(out) == set(item) | {"is_synthetic"} and out["is_synthetic"] is True
    for key in ("image", "label", "inst"):
        assert type(out[key]) is type(item[key])
        assert out[key].dtype == item[key].dtype and out[key].shape == item[key].shape
    assert out["name"] == item["name"] and out["meta"] == item["meta"]
    assert 0 <= out["image"].min() and out["image"].max() <= 1
    # The synthetic image, type map and instances come from the same window of one cached tile.
    found = False
    for i in range(len(cache)):
        rec = cache.read(i)
        windows = np.lib.stride_tricks.sliding_window_view(rec["inst"], (32, 32))
        for top, left in np.argwhere((windows == out["inst"][0]).all(axis=(2, 3))):
            window = (slice(top, top + 32), slice(left, left + 32))
            found |= bool(
                np.array_equal(out["label"][0], rec["type"][window])
                and np.allclose(out["image"] * 255, np.moveaxis(rec["image"][window], -1, 0), atol=1e-3)
            )
    assert found
    assert item["image"].shape == (3, 32, 32)  # the input dictionary is not modified


def test_torch_inputs_stay_torch(make_cache):
    aug = SyntheticAugment(make_cache(), prob=1.0).set_random_state(0)
    item = real_sample().to_dict()
    item = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in item.items()}
    out = aug(item)
    for key in ("image", "label", "inst"):
        assert isinstance(out[key], torch.Tensor) and out[key].dtype == item[key].dtype
        assert out[key].shape == item[key].shape


def test_resize_fits_any_tile_size(make_cache):
    aug = SyntheticAugment(make_cache(size=48), prob=1.0, crop="resize").set_random_state(0)
    out = aug(real_sample(32).to_dict())
    assert out["image"].shape == (3, 32, 32) and out["label"].shape == (1, 32, 32)
    # Nearest-neighbour masks keep labels: every label value is a cache type, types follow instances.
    assert set(np.unique(out["label"])) <= {0, 1, 2, 3, 4}
    assert np.array_equal(out["label"][0] > 0, out["inst"][0] > 0)


def test_target_types_only_draw_tiles_holding_them(make_cache):
    cache = make_cache(n=12)  # tile i holds type i % 4 + 1 only
    aug = SyntheticAugment(cache, prob=1.0, target_types=[2]).set_random_state(0)
    item = real_sample().to_dict()
    for _ in range(30):
        assert set(np.unique(aug(item)["label"])) <= {0, 2}


def test_type_weights_over_represent_as_asked(make_cache):
    cache = make_cache(n=12)  # each type in 3 tiles with equal instance counts
    aug = SyntheticAugment(cache, prob=1.0, type_weights={3: 3.0}).set_random_state(0)
    item = real_sample().to_dict()
    n = 300
    hits = sum(3 in np.unique(aug(item)["label"]) for _ in range(n))
    low, high = _binomial_bounds(n, 3 / 6)  # weight 3 against 1 + 1 + 1; uniform would give 1/4
    assert low <= hits <= high


def test_paste_adds_target_nuclei_without_touching_real_ones(make_cache):
    cache = make_cache(size=32, types_of=lambda i: (2, 3))
    aug = SyntheticAugment(cache, prob=1.0, mode="paste", target_types=[3], margin=1).set_random_state(0)
    # One real nucleus near the centre: synthetic nuclei far enough from it get pasted.
    item = real_sample(32, types=(1,), cell=32).to_dict()
    pasted_any = False
    for _ in range(10):
        out = aug(item)
        real_fg = item["inst"][0] > 0
        assert np.array_equal(out["inst"][0][real_fg], item["inst"][0][real_fg])
        assert np.array_equal(out["image"][:, real_fg], item["image"][:, real_fg])
        new = out["inst"][0] != item["inst"][0]
        pasted_any |= bool(new.any())
        assert set(np.unique(out["label"][0][new])) <= {3}
        assert out["inst"][0][new].min(initial=99) > item["inst"][0].max()
        # At least `margin` free pixels between pasted and real nuclei.
        assert not (ndimage.binary_dilation(real_fg) & new).any()
        assert out["label"].dtype == np.int64 and out["inst"].dtype == np.int32
    assert pasted_any


def test_same_seed_same_stream_other_seed_other_stream(make_cache):
    cache = make_cache()
    item = real_sample().to_dict()

    def stream(seed):
        aug = SyntheticAugment(cache, prob=0.5).set_random_state(seed)
        return [aug(item)["image"].sum() for _ in range(20)]

    assert stream(1) == stream(1)
    assert stream(1) != stream(2)


def test_pickles_without_open_handles_after_use(make_cache):
    aug = SyntheticAugment(make_cache(), prob=1.0, preload=False).set_random_state(0)
    item = real_sample().to_dict()
    aug(item)  # opens the zarr store in this process
    clone = pickle.loads(pickle.dumps(aug))
    assert clone(item)["is_synthetic"] is True


def test_empty_cache_is_refused(make_cache):
    with pytest.raises(ValueError, match="empty"):
        SyntheticAugment(make_cache(n=0))


def test_cache_with_other_number_of_types_is_refused(make_cache):
    with pytest.raises(ValueError, match="4 nucleus types but the real data has 3"):
        SyntheticAugment(make_cache(), num_types=3)
    aug = SyntheticAugment(make_cache(num_types=2, types_of=lambda i: (1, 2)), prob=1.0)
    with pytest.raises(ValueError, match="holds type 4"):
        aug(real_sample(types=(4,)).to_dict())


def test_cache_whose_class_names_differ_from_the_real_datas_is_refused(make_cache):
    consep = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    pannuke_like = {1: "neoplastic", 2: "inflammatory", 3: "connective", 4: "dead"}
    cache = make_cache(type_names=consep)
    assert cache.type_names == consep
    with pytest.raises(ValueError, match="sampled on masks with types"):
        SyntheticAugment(cache, num_types=4, type_names=pannuke_like)  # same count, other classes
    SyntheticAugment(cache, num_types=4, type_names=consep)
    SyntheticAugment(make_cache(), type_names=pannuke_like)  # a cache that records no names: unknown
    # ... but its type count is known: a 6-type cache would hand a 4-type segmenter labels 5 and 6
    with pytest.raises(ValueError, match="holds 6 nucleus types but the real data's `type_names` go up to 4"):
        SyntheticAugment(make_cache(num_types=6), type_names=consep)


def test_tiles_smaller_than_the_samples_are_refused(make_cache):
    aug = SyntheticAugment(make_cache(size=32), prob=1.0)
    with pytest.raises(ValueError, match="crop='resize'"):
        aug(real_sample(48).to_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"prob": 1.5}, "prob"), ({"mode": "blend"}, "mode"), ({"crop": "pad"}, "crop"),
     ({"target_types": [7]}, "target_types"), ({"keys": ("a", "b", "c")}, "keys")],
)
def test_bad_options_name_the_argument(make_cache, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticAugment(make_cache(), **kwargs)


def test_missing_keys_raise_unless_allowed(make_cache):
    item = real_sample().to_dict()
    del item["label"]
    with pytest.raises(KeyError):
        SyntheticAugment(make_cache(), prob=1.0)(item)
    out = SyntheticAugment(make_cache(), prob=1.0, allow_missing_keys=True)(item)
    assert "label" not in out and out["is_synthetic"] is True


def test_preloaded_cache_gives_the_same_stream(make_cache):
    cache = make_cache()
    item = real_sample().to_dict()
    read = SyntheticAugment(cache, prob=0.5, preload=False).set_random_state(4)
    preloaded = SyntheticAugment(cache, prob=0.5, preload=True).set_random_state(4)
    for _ in range(20):
        a, b = read(item), preloaded(item)
        assert a["is_synthetic"] == b["is_synthetic"]
        for key in ("image", "label", "inst"):
            assert np.array_equal(a[key], b[key])


def test_preload_auto_holds_small_caches_in_memory_and_streams_large_ones(make_cache, monkeypatch):
    from synthaug.augment import _preload

    cache = make_cache()
    assert SyntheticAugment(cache, prob=0.5).source.preloaded
    monkeypatch.setattr(_preload, "AUTO_PRELOAD_BYTES", 0)
    assert not SyntheticAugment(cache, prob=0.5).source.preloaded
    with pytest.raises(ValueError, match="`preload`"):
        SyntheticAugment(cache, prob=0.5, preload="yes")


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("crop", ["random", "center"])
def test_writing_into_an_output_never_changes_later_draws(make_cache, as_tensor, crop):
    # Preloaded records are views into memory shared by every draw; a later in-place transform
    # (normalisation, label remapping) must not reach back into the cache.
    cache = make_cache(n=1)
    item = real_sample().to_dict()
    if as_tensor:
        item = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}
    aug = SyntheticAugment(cache, prob=1.0, preload=True, crop=crop)
    first = aug(item)
    expected = {key: np.array(first[key]) for key in ("image", "label", "inst")}
    for key in ("image", "label", "inst"):
        first[key][...] = 0
    second = aug(item)
    for key in ("image", "label", "inst"):
        assert np.array_equal(np.asarray(second[key]), expected[key])


def test_preloaded_records_equal_the_cache_across_block_boundaries(make_cache):
    from synthaug.augment._preload import PreloadedRecords

    cache = make_cache(n=12)
    records = PreloadedRecords(cache, block=5)
    assert len(records) == 12
    for i in range(12):
        held, stored = records.read(i), cache.read(i)
        assert held["meta"] == stored["meta"]
        for key in ("image", "inst", "type"):
            assert held[key].shape == stored[key].shape and np.array_equal(held[key], stored[key])
    assert set(records.read(3, ("inst",))) == {"inst"}


def test_metatensor_outputs_keep_the_metadata_but_not_the_real_items_operations(make_cache):
    from monai.data import MetaTensor
    from monai.transforms import RandSpatialCropd

    item = real_sample(32).to_dict()
    item = RandSpatialCropd(("image", "label", "inst"), roi_size=(24, 24))(item)  # MetaTensors with history
    out = SyntheticAugment(make_cache(size=32), prob=1.0).set_random_state(0)(item)
    for key in ("image", "label", "inst"):
        assert isinstance(out[key], MetaTensor) and out[key].shape == item[key].shape
        assert out[key].dtype == item[key].dtype
        assert torch.equal(out[key].affine, item[key].affine)
        # A synthetic tile was not cropped from this real sample: no inverse may undo that crop on it.
        assert out[key].applied_operations == [] and len(item[key].applied_operations) == 1
        assert out[key].meta is not item[key].meta  # copied: editing one leaves the other
