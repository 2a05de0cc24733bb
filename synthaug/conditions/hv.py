"""Horizontal/vertical (HV) distance maps of an instance mask, as in HoVer-Net and MONAI.

Each nucleus pixel gets its horizontal (column) and vertical (row) offset from the nucleus centre,
scaled separately on each side so that the nucleus spans [-1, 1] on both axes; background is 0.
Channel order is ``(h, v)``: channel 0 varies along columns (x), channel 1 along rows (y), the
order of both MONAI's ``ComputeHoVerMaps`` and HoVer-Net's ``np.dstack([x_map, y_map])``.

Two conventions:

- ``"monai"`` reproduces ``monai.transforms.ComputeHoVerMaps`` bit for bit: float centroid
  (``skimage.measure.regionprops``), offsets computed in float64, then cast to ``dtype``.
- ``"hovernet"`` follows ``gen_instance_hv_map`` of vqdang/hover_net (``models/hovernet/targets.py``):
  the centre of mass is rounded to a pixel on a crop that starts 2 px before the bounding box, and
  offsets come from a 1-based ``arange``, so the zero lands one pixel left of/above the rounded
  centre. HoVer-Net pads its patches so that crop never leaves the image; we compute the same
  crop coordinates virtually, which equals padding the mask by 2 px first. HoVer-Net also drops
  instances under 30 px and splits labels that mirror padding made disconnected; here every label
  is one instance and the size filter is the ``min_area`` option (``min_area=30`` for HoVer-Net's
  training targets). Offsets are exact integers divided once in float64 and rounded to ``dtype``,
  which for float32 equals HoVer-Net's float32 division.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from synthaug._validation import check_choice, check_instance_mask, check_int
from synthaug.conditions._kernels import _hv_maps_batch_kernel, _hv_maps_kernel

HV_CONVENTIONS = ("monai", "hovernet")
BACKENDS = ("numba", "reference")


def compute_hv_maps(
    inst: np.ndarray,
    *,
    convention: str = "monai",
    dtype: DTypeLike = np.float32,
    backend: str = "numba",
    min_area: int = 0,
) -> np.ndarray:
    """HV maps ``(2, H, W)`` ``[h, v]`` in [-1, 1] of an instance mask.

    Args:
        inst: ``(H, W)`` instance mask, any signed/unsigned integer dtype up to 64 bits; 0 is
            background, labels need not be contiguous. A torch tensor is accepted (moved to numpy).
        convention: ``"monai"`` (bit-for-bit ``monai.transforms.ComputeHoVerMaps``) or
            ``"hovernet"`` (HoVer-Net's rounded-centre target); see the module docstring.
        dtype: floating output dtype.
        backend: ``"numba"`` (two pixel passes, compiled) or ``"reference"`` (vectorised NumPy,
            the same maths; used to test the kernel).
        min_area: instances with fewer pixels get zero HV values (HoVer-Net used 30); 0 keeps all.

    Returns:
        ``(2, H, W)`` array of ``dtype``: channel 0 = horizontal, channel 1 = vertical.

    Raises:
        TypeError: if ``inst`` is not an integer array or ``dtype`` is not a float dtype.
        ValueError: on a wrong shape, negative labels or an unknown option.

    Example:
        >>> inst = np.zeros((5, 5), np.int32); inst[1:4, 1:4] = 7
        >>> compute_hv_maps(inst)[0, 2]
        array([ 0., -1.,  0.,  1.,  0.], dtype=float32)
    """
    inst = check_instance_mask(inst, "inst", ndim=2)
    hovernet, out_dtype, kernel_dtype, min_area = _check_options(convention, dtype, backend, min_area)
    if backend == "reference":
        return _hv_maps_reference(inst, hovernet=hovernet, min_area=min_area).astype(out_dtype)
    labels, size, _ = _dense_labels(inst)
    out = np.empty((2, *inst.shape), kernel_dtype)
    _hv_maps_kernel(labels, size, hovernet, min_area, out)
    return out.astype(out_dtype, copy=False)


def compute_hv_maps_batch(
    insts: np.ndarray,
    *,
    convention: str = "monai",
    dtype: DTypeLike = np.float32,
    backend: str = "numba",
    min_area: int = 0,
) -> np.ndarray:
    """HV maps of a batch of masks, ``(N, H, W) -> (N, 2, H, W)``; the numba backend uses all cores.

    Args:
        insts: ``(N, H, W)`` instance masks (same rules as :func:`compute_hv_maps`); each image is
            independent, so the same label in two images is two nuclei.
        convention, dtype, backend, min_area: as in :func:`compute_hv_maps`.

    Returns:
        ``(N, 2, H, W)`` array of ``dtype``.

    Raises:
        TypeError: if ``insts`` is not an integer array or ``dtype`` is not a float dtype.
        ValueError: on a wrong shape, negative labels or an unknown option.
    """
    insts = check_instance_mask(insts, "insts", ndim=3)
    hovernet, out_dtype, kernel_dtype, min_area = _check_options(convention, dtype, backend, min_area)
    if backend == "reference":
        out = np.empty((insts.shape[0], 2, *insts.shape[1:]), out_dtype)
        for i, inst in enumerate(insts):
            out[i] = _hv_maps_reference(inst, hovernet=hovernet, min_area=min_area)
        return out
    num, height, width = insts.shape
    if insts.size == 0:
        return np.zeros((num, 2, height, width), out_dtype)
    maxes = insts.reshape(num, -1).max(axis=1)
    if (maxes <= height * width).all():  # the usual case: no copy beyond a dtype widening
        labels = insts if insts.dtype in (np.int32, np.int64) else insts.astype(np.int32)
        sizes = maxes.astype(np.int64) + 1
    else:
        pairs = [_dense_labels(inst) for inst in insts]
        labels = np.stack([p[0].astype(np.int64, copy=False) for p in pairs])
        sizes = np.array([p[1] for p in pairs], np.int64)
    out = np.empty((num, 2, height, width), kernel_dtype)
    _hv_maps_batch_kernel(labels, sizes, hovernet, min_area, out)
    return out.astype(out_dtype, copy=False)


def _check_options(convention: Any, dtype: Any, backend: Any, min_area: Any) -> tuple[bool, Any, Any, int]:
    check_choice(convention, "convention", HV_CONVENTIONS)
    check_choice(backend, "backend", BACKENDS)
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"`dtype` must be a floating dtype such as np.float32, got {dtype!r}.") from err
    if out_dtype.kind != "f":
        raise TypeError(f"`dtype` must be a floating dtype such as np.float32, got {out_dtype}.")
    check_int(min_area, "min_area", minimum=0, hint="0 keeps every instance")
    # The kernels write float32 or float64; any other float dtype is rounded once from float64,
    # which is what MONAI's assignment into an array of that dtype does too.
    kernel_dtype = out_dtype if out_dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return convention == "hovernet", out_dtype, kernel_dtype, int(min_area)


def _dense_labels(inst: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Labels the kernel can index accumulators with, the accumulator size (max label + 1), and
    whether the labels were compacted (then they are no longer the caller's ids).

    Masks whose largest label is at most the pixel count (every realistic mask) go in unchanged
    (only widened to int32/int64, one specialisation each); sparse 64-bit labels are compacted to
    ``0..K`` with ``np.unique`` first, so accumulator arrays never exceed the image size.
    """
    max_label = int(inst.max()) if inst.size else 0
    if max_label <= inst.size:
        if inst.dtype in (np.int32, np.int64):
            return inst, max_label + 1, False
        return inst.astype(np.int32), max_label + 1, False
    ids, inverse = np.unique(inst, return_inverse=True)
    compact = inverse.reshape(inst.shape).astype(np.int64)
    if ids[0] != 0:  # no background pixel: shift so that no nucleus becomes label 0
        compact += 1
    return compact, int(compact.max()) + 1, True


def _hv_maps_reference(inst: np.ndarray, *, hovernet: bool, min_area: int) -> np.ndarray:
    """Plain NumPy twin of ``_hv_maps_kernel``: ``(2, H, W)`` float64, no per-instance loop."""
    out = np.zeros((2, *inst.shape), np.float64)
    rows, cols = np.nonzero(inst)
    if rows.size == 0:
        return out
    _, lab = np.unique(inst[rows, cols], return_inverse=True)
    lab = lab.ravel()
    count = np.bincount(lab)
    keep = count[lab] >= min_area
    for channel, coord in ((0, cols), (1, rows)):
        # bincount sums integer coordinates exactly in float64 (< 2**53), as regionprops' mean does.
        total = np.bincount(lab, weights=coord)
        lo = np.full(count.size, np.iinfo(np.int64).max)
        hi = np.full(count.size, -1)
        np.minimum.at(lo, lab, coord)
        np.maximum.at(hi, lab, coord)
        if hovernet:
            origin = lo - 2
            com = (total - count * origin) / count
            centre = (origin - 1 + np.floor(com + 0.5)).astype(np.float64)
        else:
            centre = total / count
        d = coord - centre[lab]
        neg = -(lo - centre)[lab]
        pos = (hi - centre)[lab]
        d = np.divide(d, neg, out=d.copy(), where=d < 0)
        d = np.divide(d, pos, out=d, where=d > 0)
        out[channel, rows[keep], cols[keep]] = d[keep]
    return out
