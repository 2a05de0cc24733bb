"""HoVer-Net maps after geometry: recomputed HV/type maps follow the augmented mask, warped maps do not."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, ComputeHoVerMaps, Flipd, RandRotate90d, Rotate90d

from synthaug.augment.hovernet_maps import AlbumentationsHoVerNetMaps, HoVerNetMapsd, HVMaps, HVMapsd
from synthaug.conditions import compute_hv_maps, type_map_from_instances, type_one_hot


def toy() -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric nuclei (so flips and rotations change every HV map), touching the border."""
    inst = np.zeros((24, 20), np.int32)
    inst[2:9, 3:8] = 5
    inst[4:6, 8:12] = 5  # a tail to the right: centroid off the box centre
    inst[12:20, 10:14] = 7
    inst[18:24, 0:5] = 2
    return inst, type_map_from_instances(inst, {5: 3, 7: 1, 2: 2})


@pytest.mark.parametrize(
    ("geometry", "warp"),
    [
        (Flipd(["inst", "label", "hv_before"], spatial_axis=1), lambda hv: np.flip(hv, axis=-1)),
        (Flipd(["inst", "label", "hv_before"], spatial_axis=0), lambda hv: np.flip(hv, axis=-2)),
        (Rotate90d(["inst", "label", "hv_before"], k=1), lambda hv: np.rot90(hv, 1, axes=(-2, -1))),
    ],
    ids=["hflip", "vflip", "rot90"],
)
def test_monai_maps_follow_the_augmented_mask(geometry, warp):
    inst, types = toy()
    hv_before = compute_hv_maps(inst)
    data = {"inst": inst[None], "label": types[None], "hv_before": hv_before}
    out = Compose([geometry, HoVerNetMapsd(num_types=3)])(data)
    moved_inst = np.asarray(out["inst"])[0]
    hv = np.asarray(out["hv"])
    assert np.array_equal(hv, compute_hv_maps(moved_inst))
    assert np.array_equal(np.asarray(out["type_one_hot"]), type_one_hot(np.asarray(out["label"])[0], 3))
    warped = np.ascontiguousarray(warp(hv_before))
    assert not np.allclose(hv, warped, atol=1e-3)  # warping the old maps gives wrong maps
    assert np.array_equal(np.asarray(out["hv_before"]), warped)  # (the geometry did warp that key)


def test_warped_hflip_target_has_the_wrong_sign():
    inst, _ = toy()
    flipped = np.ascontiguousarray(np.flip(inst, axis=1))
    recomputed_h = compute_hv_maps(flipped)[0]
    warped_h = np.flip(compute_hv_maps(inst)[0], axis=1)
    np.testing.assert_allclose(recomputed_h, -warped_h, atol=1e-6)  # h must grow left to right again


@pytest.mark.parametrize(
    "geometry",
    [A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0), A.RandomRotate90(p=1.0), A.Transpose(p=1.0)],
    ids=lambda t: type(t).__name__,
)
def test_albumentations_maps_follow_the_augmented_mask(geometry):
    inst, types = toy()
    image = np.zeros((*inst.shape, 3), np.uint8)
    pipeline = A.Compose(
        [geometry, AlbumentationsHoVerNetMaps(num_types=3)], additional_targets={"types": "mask"}, seed=0
    )
    out = pipeline(image=image, mask=inst, types=types)
    assert out["hv"].shape == (*out["mask"].shape, 2) and out["hv"].dtype == np.float32
    assert np.array_equal(np.moveaxis(out["hv"], -1, 0), compute_hv_maps(out["mask"]))
    assert np.array_equal(np.moveaxis(out["type_one_hot"], -1, 0), type_one_hot(out["types"], 3))
    assert not np.array_equal(out["mask"], inst)  # the geometry happened ...
    assert not np.array_equal(out["hv"], np.moveaxis(compute_hv_maps(inst), 0, -1))  # ... and the maps moved


def test_albumentations_maps_keep_existing_targets_and_serialise():
    inst, _ = toy()
    image = np.random.default_rng(0).integers(0, 255, (*inst.shape, 3), dtype=np.uint8)
    out = A.Compose([AlbumentationsHoVerNetMaps(hv_key="hover")], strict=True)(image=image, mask=inst)
    assert np.array_equal(out["image"], image) and np.array_equal(out["mask"], inst)
    assert set(out) == {"image", "mask", "hover"}
    described = A.to_dict(A.Compose([AlbumentationsHoVerNetMaps(num_types=4, convention="hovernet")]))
    params = described["transform"]["transforms"][0]
    assert params["num_types"] == 4 and params["convention"] == "hovernet"


def test_hvmaps_is_a_drop_in_for_compute_hover_maps():
    inst, _ = toy()
    tensor = MetaTensor(torch.from_numpy(inst[None]), meta={"filename_or_obj": "tile_7"})
    ours = HVMaps()(tensor)
    assert isinstance(ours, MetaTensor) and ours.meta["filename_or_obj"] == "tile_7"
    assert torch.equal(ours.as_tensor(), ComputeHoVerMaps()(tensor).as_tensor())
    as_numpy = HVMaps(dtype=np.float64)(inst[None])
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float64
    assert np.array_equal(HVMaps(convention="hovernet")(inst), compute_hv_maps(inst, convention="hovernet"))


def test_hvmapsd_keys_prefix_and_missing_keys():
    inst, _ = toy()
    out = HVMapsd("inst")({"inst": inst[None]})
    assert np.array_equal(out["hover_inst"], compute_hv_maps(inst))
    assert np.array_equal(
        HVMapsd("inst", new_key_prefix=None)({"inst": inst[None]})["inst"], out["hover_inst"]
    )
    assert HVMapsd("inst", allow_missing_keys=True)({"image": 1}) == {"image": 1}
    with pytest.raises(KeyError, match="inst"):
        HVMapsd("inst")({"image": 1})


def test_random_geometry_in_a_pipeline_with_float_masks():
    # MONAI spatial transforms may return float label maps; whole values are accepted
    inst, types = toy()
    pipeline = Compose([RandRotate90d(["inst", "label"], prob=1.0), HoVerNetMapsd(num_types=3)])
    pipeline.set_random_state(3)
    out = pipeline({"inst": inst[None].astype(np.float32), "label": types[None].astype(np.float32)})
    moved = np.asarray(out["inst"])[0].astype(np.int32)
    assert np.array_equal(np.asarray(out["hv"]), compute_hv_maps(moved))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda i: HVMaps()(i[None] + 0.5), ValueError, "mode='nearest'"),
        (lambda i: HVMaps()(np.stack([i, i])), ValueError, r"single-channel mask \(1, H, W\)"),
        (lambda i: HVMaps(convention="pannuke"), ValueError, "`convention`"),
        (lambda i: HoVerNetMapsd(num_types=0), ValueError, "`num_types`"),
        (
            lambda i: HoVerNetMapsd(num_types=2)({"inst": i[None], "label": 3 * (i[None] > 0)}),
            ValueError,
            "`num_types` is 2",
        ),
        (lambda i: AlbumentationsHoVerNetMaps()(mask=i[..., None].repeat(2, -1)), ValueError, r"\(H, W, 1\)"),
    ],
)
def test_invalid_inputs(call, error, match):
    inst, _ = toy()
    with pytest.raises(error, match=match):
        call(inst)
