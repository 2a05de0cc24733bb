"""``build_conditions``: the MSDM condition stack (mask, boundary, HV, type one-hot, colour) of a mask."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from synthaug._validation import check_choice, check_instance_mask
from synthaug.conditions._kernels import STACK_OK, _boundary_kernel, _hv_maps_kernel, _stack_kernel
from synthaug.conditions.channels import ConditionChannels
from synthaug.conditions.colour import ColourStats, _check_colour, colour_stats
from synthaug.conditions.hv import BACKENDS, _dense_labels
from synthaug.conditions.types import _check_inst_types, _check_type_map, type_map_from_instances

__all__ = ["boundary_map", "build_conditions"]


def boundary_map(inst: np.ndarray, *, backend: str = "numba") -> np.ndarray:
    """Inner nucleus boundaries ``(H, W)`` float32 of 0/1.

    A nucleus pixel is a boundary pixel when one of its 4-neighbours inside the image has another
    label (background or a touching nucleus): ``skimage.segmentation.find_boundaries(inst,
    mode="inner")``, which the ``"reference"`` backend calls. The image border is not a boundary.

    Args:
        inst: ``(H, W)`` integer instance mask.
        backend: ``"numba"`` (one pass) or ``"reference"`` (scikit-image).

    Returns:
        ``(H, W)`` float32 with 1 on boundary pixels.

    Raises:
        TypeError, ValueError: on an invalid mask or backend.
    """
    inst = check_instance_mask(inst, "inst")
    check_choice(backend, "backend", BACKENDS)
    if backend == "reference":
        from skimage.segmentation import find_boundaries

        return find_boundaries(inst, connectivity=1, mode="inner").astype(np.float32)
    labels, _, _ = _dense_labels(inst)
    out = np.empty(inst.shape, np.float32)
    _boundary_kernel(labels, out)
    return out


def build_conditions(
    inst: np.ndarray,
    *,
    type_map: np.ndarray | None = None,
    inst_types: Mapping[int, int] | None = None,
    colour: ArrayLike | ColourStats | None = None,
    image: np.ndarray | None = None,
    channels: ConditionChannels = ConditionChannels(),  # noqa: B008 - frozen, immutable default
) -> np.ndarray:
    """Stack the spatial conditions of one instance mask, ``(C, H, W)`` float32, in ``channels`` order.

    Channels (see :class:`ConditionChannels`): ``mask`` (nucleus pixels, {0, 1}), ``boundary``
    (inner boundaries, {0, 1}), ``hv_h``/``hv_v`` (HV maps in [-1, 1], ``channels.hv_convention``),
    ``type_1..type_T`` (one-hot, {0, 1}), ``colour_r/g/b`` (every nucleus painted in the
    foreground colour, background in the background colour, [0, 1]).

    Args:
        inst: ``(H, W)`` integer instance mask (0 = background).
        type_map: ``(H, W)`` type index map (0 = background, 1..T); takes precedence over
            ``inst_types``. With neither, the type channels are all 0 (types unknown, e.g. PCam).
        inst_types: instance id -> type id, painted into a type map when ``type_map`` is None.
        colour: the colour condition, a ``(6,)`` vector ``[fg RGB, bg RGB]`` in [0, 1] or a
            :class:`ColourStats`. If None it is measured from ``image``.
        image: ``(H, W, 3)`` RGB (uint8 or float in [0, 1]) to measure ``colour`` from.
        channels: which channels to build, in which order.

    Returns:
        ``(channels.num_channels, H, W)`` float32.

    Raises:
        TypeError: on wrong argument types (non-integer masks, ``channels`` not a ``ConditionChannels``, ...).
        ValueError: on shape mismatches, out-of-range colours or types, or when ``channels`` asks
            for colour and neither ``colour`` nor ``image`` is given.

    Example:
        >>> inst = np.zeros((8, 8), np.int32); inst[2:6, 2:6] = 1
        >>> cond = build_conditions(inst, inst_types={1: 3}, colour=[0.3, 0.1, 0.4, 0.9, 0.8, 0.9])
        >>> cond.shape, float(cond[ConditionChannels().index("type_3")].sum())
        ((11, 8, 8), 16.0)
    """
    if not isinstance(channels, ConditionChannels):
        raise TypeError(f"`channels` must be a ConditionChannels, got {type(channels).__name__}.")
    inst = check_instance_mask(inst, "inst")
    if image is not None and getattr(image, "shape", (None, None))[:2] != inst.shape:
        raise ValueError(
            f"`image` has shape {getattr(image, 'shape', None)} but `inst` is {inst.shape}; "
            "image and mask must have the same height and width."
        )
    labels, size, compacted = _dense_labels(inst)
    out = np.empty((channels.num_channels, *inst.shape), np.float32)
    if "hv" in channels.include:
        hv = out[channels.group_slice("hv")]
        _hv_maps_kernel(labels, size, channels.hv_convention == "hovernet", 0, hv)
    # Everything else in one fused pixel pass (mask, boundary, one-hot, colour): this is what
    # keeps a full 256x256 stack under a millisecond.
    offsets = np.full(6, -1, np.int64)
    for position, group in enumerate(("mask", "boundary", "types")):
        if group in channels.include:
            offsets[position] = channels.group_slice(group).start
    offsets[3] = channels.num_types
    types = np.zeros((1, 1), np.int16)
    if "types" in channels.include:
        types, offsets[5] = _types_for_kernel(inst, size, compacted, type_map, inst_types, channels.num_types)
    colour_vector = np.zeros(6, np.float32)
    if "colour" in channels.include:
        offsets[4] = channels.group_slice("colour").start
        colour_vector = _colour_vector(colour, image, inst)
    status = _stack_kernel(labels, types, colour_vector, offsets, out)
    if status != STACK_OK:  # redo the type step in NumPy, which raises the precise error
        _check_types(inst, type_map, inst_types, channels.num_types)
        raise AssertionError(f"condition kernel failed with status {status}")  # pragma: no cover
    return out


def _types_for_kernel(
    inst: np.ndarray,
    size: int,
    compacted: bool,
    type_map: np.ndarray | None,
    inst_types: Mapping[int, int] | None,
    num_types: int,
) -> tuple[np.ndarray, int]:
    """``(types, per_label)`` for ``_stack_kernel``: a per-pixel map, or a per-label table."""
    if type_map is not None:
        types = _check_type_map(type_map, inst.shape)
        if types.dtype != np.uint8:  # one kernel specialisation; range-check before narrowing
            _check_types(inst, types, None, num_types)
            types = types.astype(np.uint8)
        # A type on a background pixel names no nucleus: painting it would set a type channel
        # where the mask channel says "no nucleus". Only nuclei carry types.
        return np.where(inst > 0, types, 0).astype(np.uint8), 0
    if inst_types is None:  # types unknown: every label has type 0, all type channels stay 0
        return np.zeros((1, size), np.int16), 1
    if compacted:  # the kernel's labels are no longer the ids of `inst_types`
        return type_map_from_instances(inst, inst_types), 0
    keys, values = _check_inst_types(inst_types)
    table = np.full((1, size), -1, np.int16)
    inside = keys < size
    table[0, keys[inside]] = values[inside]
    table[0, 0] = 0
    return table, 1


def _check_types(
    inst: np.ndarray, type_map: np.ndarray | None, inst_types: Mapping[int, int] | None, num_types: int
) -> None:
    """Raise the NumPy path's error for a type map / table that does not fit ``channels``."""
    if type_map is not None:
        types = _check_type_map(type_map, inst.shape)
    else:
        types = type_map_from_instances(inst, inst_types)
    if types.size and types.max() > num_types:
        raise ValueError(
            f"the type map has type {int(types.max())} but `channels` has `num_types`={num_types}; "
            "use ConditionChannels with more types or merge the extra types first."
        )


def _colour_vector(
    colour: ArrayLike | ColourStats | None, image: np.ndarray | None, inst: np.ndarray
) -> np.ndarray:
    if colour is None:
        if image is None:
            raise ValueError(
                "`channels` includes 'colour' but neither `colour` nor `image` was given; pass "
                "`colour=[fg_r, fg_g, fg_b, bg_r, bg_g, bg_b]` in [0, 1] or the `image` to measure it from."
            )
        return colour_stats(image, inst).as_vector()
    if isinstance(colour, ColourStats):
        return colour.as_vector()
    try:
        vector = np.asarray(colour, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`colour` must be a (6,) vector [fg RGB, bg RGB] in [0, 1] or a ColourStats, got {colour!r}."
        ) from err
    if vector.shape != (6,):
        raise ValueError(
            f"`colour` must be a (6,) vector [fg RGB, bg RGB] in [0, 1] or a ColourStats, "
            f"got shape {vector.shape}."
        )
    return np.concatenate([_check_colour(vector[:3], "colour[:3]"), _check_colour(vector[3:], "colour[3:]")])
