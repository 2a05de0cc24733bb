"""Private numba kernels. They take prepared arrays and do no checking (the public functions do).

Each kernel has a plain NumPy twin that states the same maths (``hv._hv_maps_reference``,
``boundary_map(..., backend="reference")``); property tests assert kernel == reference == the
upstream definition. ``tests/conditions/test_hv.py::test_kernels_without_jit`` also runs them as
plain Python (``NUMBA_DISABLE_JIT=1 python -m tests.conditions.nojit_check``), the command to put
under ``coverage run`` to see inside them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _hv_maps_kernel(labels, size, hovernet, min_area, out):  # pragma: no cover - jitted
    """HV maps of one ``(H, W)`` mask into ``out`` ``(2, H, W)`` (float32/float64), two pixel passes.

    ``labels`` has values in ``[0, size)`` (the caller compacts sparse labels first), so per-label
    accumulators are plain arrays indexed by label: no dictionary, no per-instance rescan.
    """
    height, width = labels.shape
    count = np.zeros(size, np.int64)
    sum_r = np.zeros(size, np.int64)
    sum_c = np.zeros(size, np.int64)
    min_r = np.full(size, height, np.int64)
    max_r = np.full(size, -1, np.int64)
    min_c = np.full(size, width, np.int64)
    max_c = np.full(size, -1, np.int64)

    # Pass 1: per-label pixel count, coordinate sums and bounding box. Rows arrive in order, so a
    # label's first row is its min and the current row its max.
    for r in range(height):
        row = labels[r]
        for c in range(width):
            lab = row[c]
            if lab == 0:
                continue
            if count[lab] == 0:
                min_r[lab] = r
            max_r[lab] = r
            count[lab] += 1
            sum_r[lab] += r
            sum_c[lab] += c
            min_c[lab] = min(min_c[lab], c)
            max_c[lab] = max(max_c[lab], c)

    # Per label: centre and the two normalisers of each axis. MONAI's ComputeHoVerMaps computes
    # d = coord - centroid in float64 and divides the negative side by -min(d) and the positive side
    # by max(d); rounding is monotonic, so min(d) == min_coord - centroid exactly. HoVer-Net's
    # gen_instance_hv_map works in integers on a crop starting 2 px before the bounding box, with a
    # rounded centre of mass and a 1-based arange, so value = coord - origin + 1 - round(com).
    centre_r = np.zeros(size, np.float64)
    centre_c = np.zeros(size, np.float64)
    neg_r = np.ones(size, np.float64)
    pos_r = np.ones(size, np.float64)
    neg_c = np.ones(size, np.float64)
    pos_c = np.ones(size, np.float64)
    for lab in range(1, size):
        n = count[lab]
        if n == 0:
            continue
        if hovernet:
            origin_r = min_r[lab] - 2
            origin_c = min_c[lab] - 2
            com_r = np.float64(sum_r[lab] - n * origin_r) / np.float64(n)
            com_c = np.float64(sum_c[lab] - n * origin_c) / np.float64(n)
            # the centre is stored so that value = coord - centre is HoVer-Net's integer offset
            centre_r[lab] = np.float64(origin_r - 1 + np.int64(np.floor(com_r + 0.5)))
            centre_c[lab] = np.float64(origin_c - 1 + np.int64(np.floor(com_c + 0.5)))
        else:
            centre_r[lab] = np.float64(sum_r[lab]) / np.float64(n)
            centre_c[lab] = np.float64(sum_c[lab]) / np.float64(n)
        neg_r[lab] = -(np.float64(min_r[lab]) - centre_r[lab])
        pos_r[lab] = np.float64(max_r[lab]) - centre_r[lab]
        neg_c[lab] = -(np.float64(min_c[lab]) - centre_c[lab])
        pos_c[lab] = np.float64(max_c[lab]) - centre_c[lab]

    # Pass 2: write normalised offsets; h (channel 0) is along columns, v (channel 1) along rows.
    for r in range(height):
        row, h_row, v_row = labels[r], out[0, r], out[1, r]
        for c in range(width):
            lab = row[c]
            if lab == 0 or count[lab] < min_area:
                h_row[c] = 0.0
                v_row[c] = 0.0
                continue
            dh = np.float64(c) - centre_c[lab]
            if dh < 0:
                dh = dh / neg_c[lab]
            elif dh > 0:
                dh = dh / pos_c[lab]
            dv = np.float64(r) - centre_r[lab]
            if dv < 0:
                dv = dv / neg_r[lab]
            elif dv > 0:
                dv = dv / pos_r[lab]
            h_row[c] = dh
            v_row[c] = dv


@njit(cache=True, parallel=True)
def _hv_maps_batch_kernel(labels, sizes, hovernet, min_area, out):  # pragma: no cover - jitted
    """``_hv_maps_kernel`` over ``(N, H, W)`` masks into ``(N, 2, H, W)``, images in parallel."""
    for i in prange(labels.shape[0]):
        _hv_maps_kernel(labels[i], sizes[i], hovernet, min_area, out[i])


@njit(cache=True, nogil=True)
def _boundary_row(labels, r, out_row):  # pragma: no cover - jitted
    """Row ``r`` of the inner-boundary map: 1 where a nucleus pixel has a 4-neighbour with another label.

    A missing neighbour (outside the image) is replaced by the pixel itself, so the image border
    is not a boundary; non-short-circuit ``|`` keeps the loop branch-free (vectorisable).
    """
    height, width = labels.shape
    row = labels[r]
    up = labels[r - 1] if r > 0 else row
    down = labels[r + 1] if r + 1 < height else row
    for c in range(width):
        lab = row[c]
        left = row[c - 1] if c > 0 else lab
        right = row[c + 1] if c + 1 < width else lab
        edge = (lab != 0) & ((up[c] != lab) | (down[c] != lab) | (left != lab) | (right != lab))
        out_row[c] = 1.0 if edge else 0.0


@njit(cache=True, nogil=True)
def _boundary_kernel(labels, out):  # pragma: no cover - jitted
    """Inner boundaries into ``out`` ``(H, W)``, as ``skimage.segmentation.find_boundaries(labels,
    mode="inner")`` (connectivity 1; pixels outside the image are not neighbours)."""
    for r in range(labels.shape[0]):
        _boundary_row(labels, r, out[r])


# status codes of _stack_kernel
STACK_OK, STACK_MISSING_TYPE, STACK_TYPE_TOO_LARGE = 0, 1, 2


@njit(cache=True, nogil=True)
def _stack_kernel(labels, types, colour, offsets, out):  # pragma: no cover - jitted
    """The non-HV channels of a condition stack in one pixel pass; returns a status code.

    ``offsets`` = (mask, boundary, first type channel, num_types, first colour channel,
    per_label), -1 for a group the layout leaves out. ``types`` is a per-pixel type map ``(H, W)``,
    or with ``per_label`` = 1 a ``(1, size)`` table of each label's type (-1 = not given).
    ``colour`` = (fg RGB, bg RGB). On a status other than ``STACK_OK`` the caller redoes the step
    in NumPy to raise a precise error.
    """
    height, width = labels.shape
    mask_at, boundary_at, types_at = offsets[0], offsets[1], offsets[2]
    num_types, colour_at = offsets[3], offsets[4]
    per_label = offsets[5] == 1
    kinds = np.zeros(width, np.int64)
    # Row by row, one channel at a time: channel planes lie a power of two apart, so writing all
    # channels of a pixel together would make every store hit the same cache set.
    for r in range(height):
        row = labels[r]
        if mask_at >= 0:
            for c in range(width):
                out[mask_at, r, c] = 1.0 if row[c] != 0 else 0.0
        if boundary_at >= 0:
            _boundary_row(labels, r, out[boundary_at, r])
        if types_at >= 0:
            if per_label:
                for c in range(width):
                    kinds[c] = types[0, row[c]]
            else:
                for c in range(width):
                    kinds[c] = types[r, c]
            missing = False
            too_large = False
            for c in range(width):  # branch-free checks; table[0] is 0, so -1 means a nucleus
                missing |= kinds[c] < 0
                too_large |= kinds[c] > num_types
            if missing:
                return STACK_MISSING_TYPE
            if too_large:
                return STACK_TYPE_TOO_LARGE
            for k in range(num_types):
                plane = out[types_at + k, r]
                for c in range(width):
                    plane[c] = 1.0 if kinds[c] == k + 1 else 0.0
        if colour_at >= 0:
            for k in range(3):
                fg, bg = colour[k], colour[3 + k]  # hoisted: `out` might alias `colour` for all numba knows
                plane = out[colour_at + k, r]
                for c in range(width):
                    plane[c] = fg if row[c] != 0 else bg
    return STACK_OK
