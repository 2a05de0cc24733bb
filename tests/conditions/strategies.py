"""Hypothesis strategies for instance masks: every integer dtype, fragmented labels and blob layouts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def instance_masks(draw, *, max_side: int = 20, max_label: int = 100) -> np.ndarray:
    """A ``(H, W)`` instance mask: scattered pixels (disconnected labels), or painted rectangles.

    Labels are non-contiguous and small enough for MONAI's ``regionprops`` (which allocates one
    slot per label value up to the maximum).
    """
    dtype = draw(st.sampled_from(INT_DTYPES))
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = min(max_label, np.iinfo(dtype).max)
    labels = rng.choice(np.arange(1, top + 1), size=min(6, top), replace=False)
    if draw(st.booleans()):  # scattered: each label is a random set of pixels, often disconnected
        inst = rng.choice(np.concatenate([[0], labels]), size=(height, width))
    else:  # blobs: rectangles painted over each other, touching each other and the border
        inst = np.zeros((height, width), np.int64)
        for label in labels:
            r0, c0 = rng.integers(0, height), rng.integers(0, width)
            inst[r0 : r0 + rng.integers(1, 8), c0 : c0 + rng.integers(1, 8)] = label
    return inst.astype(dtype)
