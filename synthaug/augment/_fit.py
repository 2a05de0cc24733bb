"""Fit a cached synthetic tile to the real sample's size and array types.

Size policy (``crop``):

- ``"random"`` / ``"center"``: a window of the real sample's size is cut from the cache tile, at
  a random or the central position. The cache tile must be at least as large as the real sample
  in both dimensions: padding would invent empty tissue, so a smaller tile is an error.
- ``"resize"``: the whole tile is resized to the real size (image by area averaging, instance and
  type maps by nearest neighbour so labels stay labels). Any tile size works, but nuclei change
  scale with the ratio of the sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.data import MetaTensor
from monai.transforms import Resize
from monai.utils import convert_to_dst_type, dtype_torch_to_numpy

CROPS = ("random", "center", "resize")


def check_tile_size(tile_hw: tuple[int, int], out_hw: tuple[int, int], crop: str) -> None:
    """Raise a ``ValueError`` when a cache tile cannot be cropped to the real sample's size."""
    if crop != "resize" and (tile_hw[0] < out_hw[0] or tile_hw[1] < out_hw[1]):
        raise ValueError(
            f"cache tiles are {tile_hw[0]}x{tile_hw[1]} but the real samples are {out_hw[0]}x{out_hw[1]}; "
            f"crop={crop!r} needs tiles at least as large as the samples. Use crop='resize', crop the "
            "real samples first (e.g. RandSpatialCropd before SyntheticAugment), or sample a larger cache."
        )


def fit_tile(
    record: dict[str, Any], out_hw: tuple[int, int], *, crop: str, offset: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop or resize one cache record to ``out_hw``.

    Args:
        record: ``SyntheticCache.read`` output (``image`` HWC uint8, ``inst``, ``type``).
        out_hw: the real sample's ``(H, W)``.
        crop: ``"random"``, ``"center"`` or ``"resize"`` (see the module docstring).
        offset: two fractions in ``[0, 1)`` placing a random crop window (drawn by the caller's
            ``randomize`` so that all randomness stays in one place).

    Returns:
        ``(image (3, H, W) uint8, inst (H, W) int32, type (H, W) uint8)``, possibly views into
        ``record`` (``as_like`` makes the copies handed to the user).
    """
    image, inst, types = record["image"], record["inst"], record["type"]
    tile_hw = image.shape[:2]
    check_tile_size(tile_hw, out_hw, crop)
    image = np.moveaxis(image, -1, 0)
    if crop == "resize":
        if tuple(tile_hw) != tuple(out_hw):
            image = Resize(out_hw, mode="area")(image.astype(np.float32), lazy=False)
            image = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
            nearest = Resize(out_hw, mode="nearest-exact")
            # float64 holds every int32 label exactly through the interpolation.
            inst = np.asarray(nearest(inst[None].astype(np.float64), lazy=False))[0].astype(np.int32)
            types = np.asarray(nearest(types[None].astype(np.float64), lazy=False))[0].astype(np.uint8)
        return image, inst, types
    spare = (tile_hw[0] - out_hw[0], tile_hw[1] - out_hw[1])
    if crop == "center":
        top, left = spare[0] // 2, spare[1] // 2
    else:
        top, left = int(offset[0] * (spare[0] + 1)), int(offset[1] * (spare[1] + 1))
    window = (slice(top, top + out_hw[0]), slice(left, left + out_hw[1]))
    return image[(slice(None), *window)], inst[window], types[window]


def as_like(value: np.ndarray, like: Any, *, image: bool = False) -> Any:
    """``value`` converted to the array type, dtype and device of ``like`` (numpy, torch, MetaTensor).

    With ``image=True`` a ``uint8`` value becomes ``[0, 1]`` floats when ``like`` is floating point
    (label maps keep their integer values whatever ``like``'s dtype). A ``MetaTensor`` result copies
    ``like``'s metadata but starts with no applied operations. The result never shares
    memory with ``value``: records may be views into a preloaded cache shared by every draw, and a
    later transform writing in place must not change what the next draw of that sample returns.
    """
    dtype = getattr(like, "dtype", None)
    is_float = dtype is not None and (
        np.issubdtype(dtype, np.floating) if isinstance(dtype, np.dtype) else dtype.is_floating_point
    )
    if image and value.dtype == np.uint8 and is_float:
        # One pass into a new C-ordered array (same values as astype(float32) / 255).
        value = np.divide(value, np.float32(255), dtype=np.float32, order="C")
    else:  # a copy in the target dtype (one pass); convert_to_dst_type may alias its input
        target = dtype if isinstance(dtype, np.dtype) else dtype_torch_to_numpy(dtype) if dtype else None
        value = np.array(value, dtype=target, order="C")
    out = convert_to_dst_type(value, like)[0]
    if isinstance(out, MetaTensor):
        # A synthetic tile is not the real sample transformed: it keeps a copy of the real item's
        # metadata (so a batch of both collates) but none of its applied operations, which no
        # inverse transform may undo on it.
        out.applied_operations = []
    return out
