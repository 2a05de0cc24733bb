"""HV maps: numba kernel == NumPy reference == MONAI ComputeHoVerMaps (bit for bit) == HoVer-Net
definition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthaug.conditions import compute_hv_maps, compute_hv_maps_batch
from tests.conditions.hovernet_oracle import gen_instance_hv_map
from tests.conditions.strategies import INT_DTYPES, instance_masks

monai_transforms = pytest.importorskip(
    "monai.transforms", reason="MONAI is the oracle for convention='monai'"
)


def monai_hv(inst: np.ndarray, dtype: str = "float32") -> np.ndarray:
    return monai_transforms.ComputeHoVerMaps(dtype=dtype)(inst[None]).numpy()


def monai_example() -> tuple[np.ndarray, np.ndarray]:
    """The 16x16 case of MONAI's tests/test_compute_ho_ver_maps.py with its expected maps."""
    inst = np.zeros((16, 16), np.int16)
    inst[5:8, 4:11] = 1
    inst[3:5, 6:9] = 1
    inst[8:10, 6:9] = 1
    inst[13:, 13:] = 2
    h = np.zeros((16, 16), np.float32)
    h[5:8, 4], h[5:8, 5], h[3:10, 6], h[3:10, 8] = -1.0, -2 / 3, -1 / 3, 1 / 3
    h[5:8, 9], h[5:8, 10], h[13:, 13], h[13:, 15] = 2 / 3, 1.0, -1.0, 1.0
    v = np.zeros((16, 16), np.float32)
    v[3, 6:9], v[4, 6:9], v[5, 4:11], v[7, 4:11] = -1.0, -2 / 3, -1 / 3, 1 / 3
    v[8, 6:9], v[9, 6:9], v[13, 13:], v[15, 13:] = 2 / 3, 1.0, -1.0, 1.0
    return inst, np.stack([h, v])


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_monai_16x16_example_bit_for_bit(backend, dtype):
    inst, expected = monai_example()
    ours = compute_hv_maps(inst, backend=backend, dtype=dtype)
    assert ours.dtype == np.dtype(dtype)
    np.testing.assert_allclose(ours, expected, atol=1e-7)
    assert np.array_equal(ours, monai_hv(inst, dtype))


@settings(max_examples=200, deadline=None)
@given(instance_masks(), st.sampled_from(["float32", "float64"]))
def test_kernel_equals_reference_equals_monai(inst, dtype):
    ours = compute_hv_maps(inst, dtype=dtype)
    assert np.array_equal(ours, compute_hv_maps(inst, dtype=dtype, backend="reference"))
    assert np.array_equal(ours, monai_hv(inst, dtype))
    assert ours.min() >= -1 and ours.max() <= 1
    assert not ours[:, inst == 0].any()  # background stays 0


@settings(max_examples=100, deadline=None)
@given(instance_masks(), st.sampled_from([0, 4, 30]))
def test_hovernet_convention_equals_hovernet_definition(inst, min_area):
    ours = compute_hv_maps(inst, convention="hovernet", min_area=min_area)
    assert np.array_equal(ours, gen_instance_hv_map(inst, min_size=min_area))
    reference = compute_hv_maps(inst, convention="hovernet", min_area=min_area, backend="reference")
    assert np.array_equal(ours, reference)


@settings(max_examples=50, deadline=None)
@given(instance_masks(), st.sampled_from([np.int64, np.uint64]), st.integers(0, 2**40))
def test_huge_64bit_labels_match_monai_on_compacted_labels(inst, dtype, offset):
    # HV maps do not depend on label values: shifting labels past any dense table must not change them
    top = np.iinfo(dtype).max - int(inst.max()) - offset
    shifted = np.where(inst != 0, inst.astype(np.uint64) + np.uint64(top), 0).astype(dtype)
    ours = compute_hv_maps(shifted)
    assert np.array_equal(ours, compute_hv_maps(shifted, backend="reference"))
    assert np.array_equal(ours, monai_hv(inst.astype(np.int64)))


def test_hovernet_zero_lands_one_pixel_before_rounded_centre():
    # a 5x5 square at columns 2..6: centroid 4; HoVer-Net's 1-based arange puts 0 at column 3
    inst = np.zeros((9, 9), np.int32)
    inst[2:7, 2:7] = 1
    h = compute_hv_maps(inst, convention="hovernet")[0, 4]
    np.testing.assert_allclose(h[2:7], [-1.0, 0.0, 1 / 3, 2 / 3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(compute_hv_maps(inst)[0, 4, 2:7], [-1.0, -0.5, 0.0, 0.5, 1.0])


def test_min_area_zeroes_small_instances_only():
    inst = np.zeros((12, 12), np.uint16)
    inst[0:2, 0:2] = 3  # 4 px
    inst[5:11, 5:11] = 9  # 36 px
    hv = compute_hv_maps(inst, min_area=30)
    assert not hv[:, inst == 3].any()
    assert np.array_equal(hv[:, inst == 9], compute_hv_maps(inst)[:, inst == 9])


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_batch_equals_per_image(backend):
    rng = np.random.default_rng(0)
    insts = rng.integers(0, 7, size=(5, 13, 17)).astype(np.uint16)
    insts[3] = 0  # an empty mask in the batch
    insts[4, 0, 0] = 60000  # sparse labels in one image take the compacting path
    for convention in ("monai", "hovernet"):
        batch = compute_hv_maps_batch(insts, convention=convention, backend=backend)
        assert batch.shape == (5, 2, 13, 17) and batch.dtype == np.float32
        for inst, hv in zip(insts, batch):
            assert np.array_equal(hv, compute_hv_maps(inst, convention=convention))


def test_edge_cases_are_valid():
    assert compute_hv_maps(np.zeros((0, 5), np.int32)).shape == (2, 0, 5)
    assert not compute_hv_maps(np.zeros((4, 4), np.int32)).any()  # empty mask
    one = np.zeros((3, 3), np.int64)
    one[0, 2] = 5  # a one-pixel instance on the border
    assert not compute_hv_maps(one).any()
    full = np.ones((4, 6), np.int8)  # one instance filling the image, touching every border
    assert np.array_equal(compute_hv_maps(full), monai_hv(full))
    assert compute_hv_maps_batch(np.zeros((0, 4, 4), np.int32)).shape == (0, 2, 4, 4)


def test_accepts_torch_tensor_and_non_contiguous_views():
    torch = pytest.importorskip("torch")
    inst, _ = monai_example()
    expected = compute_hv_maps(inst)
    assert np.array_equal(compute_hv_maps(torch.from_numpy(inst)), expected)
    assert np.array_equal(compute_hv_maps(np.asfortranarray(inst)), expected)
    wide = np.repeat(inst, 2, axis=1)[:, ::2]  # strided view of the same mask
    assert np.array_equal(compute_hv_maps(wide), expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inst": np.zeros((4, 4), np.float32)}, TypeError, "integer dtype"),
        ({"inst": np.zeros((4, 4), bool)}, TypeError, "boolean mask"),
        ({"inst": np.zeros((1, 4, 4), np.int32)}, ValueError, "2-D"),
        ({"inst": -np.ones((4, 4), np.int32)}, ValueError, "negative labels"),
        ({"inst": [[0, 1]]}, TypeError, "numpy array"),
        ({"convention": "pannuke"}, ValueError, "`convention`"),
        ({"backend": "cuda"}, ValueError, "`backend`"),
        ({"dtype": np.int32}, TypeError, "`dtype`"),
        ({"min_area": -1}, ValueError, "`min_area`"),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(kwargs, error, match):
    kwargs = {"inst": np.zeros((4, 4), np.int32), **kwargs}
    with pytest.raises(error, match=match):
        compute_hv_maps(**kwargs)


def test_batch_rejects_2d_input():
    with pytest.raises(ValueError, match=r"`insts` must be 3-D \(N, H, W\)"):
        compute_hv_maps_batch(np.zeros((4, 4), np.int32))


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already running without JIT")
def test_kernels_without_jit():
    """The kernels run as plain Python (NUMBA_DISABLE_JIT=1) agree with the references too."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "tests.conditions.nojit_check"],
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ok" in result.stdout


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_integer_dtype_on_monai_example(dtype):
    inst, expected = monai_example()
    np.testing.assert_array_equal(compute_hv_maps(inst.astype(dtype)), compute_hv_maps(inst))
    np.testing.assert_allclose(compute_hv_maps(inst.astype(dtype)), expected, atol=1e-7)
