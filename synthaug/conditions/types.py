"""Nucleus type maps (CoNSeP / PanNuke style): instance -> type tables, index maps and one-hot maps.

Type 0 is background; nucleus types are 1..T. One-hot stacks have no background channel: channel
``k - 1`` holds type ``k``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from synthaug._validation import check_instance_mask, check_int


def type_map_from_instances(inst: np.ndarray, inst_types: Mapping[int, int]) -> np.ndarray:
    """Paint each instance with its type: ``(H, W)`` uint8 index map, 0 = background.

    Args:
        inst: ``(H, W)`` integer instance mask.
        inst_types: instance id -> type id (0..255) for every instance in ``inst``; extra ids
            (e.g. nuclei cropped away) are ignored.

    Returns:
        ``(H, W)`` uint8 type map.

    Raises:
        TypeError: on a non-integer mask or a non-mapping ``inst_types``.
        ValueError: if an instance of ``inst`` has no entry in ``inst_types`` (the message lists
            them), or a type is outside 0..255.

    Example:
        >>> type_map_from_instances(np.array([[0, 5], [9, 9]]), {5: 2, 9: 1})
        array([[0, 2],
               [1, 1]], dtype=uint8)
    """
    inst = check_instance_mask(inst, "inst")
    keys, values = _check_inst_types(inst_types)
    return _lookup_types(inst, keys, values)


def instance_type_votes(inst: np.ndarray, type_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The type of every instance by majority vote of its pixels: the one vote the package uses.

    Background (type 0) pixels inside an instance do not vote; an instance with no typed pixel is
    type 0; ties go to the smaller type id. This is the vote HoVer-Net uses to turn pixel
    predictions into instance types; conditions, metrics, the cache's type counts and pasting all
    call it.

    Args:
        inst: ``(H, W)`` integer instance mask.
        type_map: ``(H, W)`` non-negative integer type map of the same shape (ids 0..255).

    Returns:
        ``(ids, types)``: the instance ids present, ascending, and their types, both ``(K,)`` int64.

    Raises:
        TypeError: on non-integer arrays.
        ValueError: on wrong shapes, a shape mismatch, negative values or type ids above 255.
    """
    inst = check_instance_mask(inst, "inst")
    type_map = _check_type_map(type_map, inst.shape)
    fg = inst > 0
    ids, compact = np.unique(inst[fg], return_inverse=True)
    types = type_map[fg].astype(np.int64)
    num_types = int(types.max()) + 1 if types.size else 1
    if num_types > 256:
        raise ValueError(
            f"`type_map` has type {num_types - 1}; type ids must lie in 0..255 (uint8 type maps)."
        )
    # one vote table (instances x types) from a single bincount over combined indices
    votes = np.bincount(compact * num_types + types, minlength=ids.size * num_types)
    votes = votes.reshape(ids.size, num_types)
    votes[:, 0] = 0  # background pixels do not vote
    winner = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), 0)  # argmax: ties -> lower id
    return ids.astype(np.int64), winner.astype(np.int64)


def instance_types_from_type_map(inst: np.ndarray, type_map: np.ndarray) -> dict[int, int]:
    """``{instance id: type id}`` by :func:`instance_type_votes`, ids ascending."""
    ids, types = instance_type_votes(inst, type_map)
    return {int(i): int(t) for i, t in zip(ids, types)}


def type_one_hot(type_map: np.ndarray, num_types: int) -> np.ndarray:
    """One-hot ``(num_types, H, W)`` float32 from a type index map; channel ``k - 1`` is type ``k``.

    Args:
        type_map: ``(H, W)`` non-negative integer type map (0 = background, no channel).
        num_types: number of nucleus types T.

    Returns:
        ``(num_types, H, W)`` float32 of 0/1; background pixels are 0 in every channel.

    Raises:
        TypeError: on a non-integer map or ``num_types``.
        ValueError: on a wrong shape, negative types, types above ``num_types`` or ``num_types < 1``.
    """
    type_map = _check_type_map(type_map, None)
    check_int(num_types, "num_types", minimum=1)
    if type_map.size and type_map.max() > num_types:
        raise ValueError(
            f"`type_map` has type {int(type_map.max())} but `num_types` is {num_types}; "
            "raise `num_types` or merge the extra types first."
        )
    out = np.empty((int(num_types), *type_map.shape), np.float32)
    for k in range(int(num_types)):
        np.copyto(out[k], type_map == k + 1)
    return out


def instances_of_type(
    inst: np.ndarray, inst_types: Mapping[int, int], type_ids: int | Iterable[int]
) -> np.ndarray:
    """The instance ids in ``inst`` whose type is one of ``type_ids`` (used for targeting).

    Args:
        inst: ``(H, W)`` integer instance mask.
        inst_types: instance id -> type id for every instance in ``inst``.
        type_ids: one type id or several.

    Returns:
        ``(K,)`` int64 array of matching instance ids, ascending (empty if none).

    Raises:
        TypeError: on a non-integer mask or non-integer type ids.
        ValueError: if an instance of ``inst`` has no entry in ``inst_types``.
    """
    inst = check_instance_mask(inst, "inst")
    keys, values = _check_inst_types(inst_types)
    if isinstance(type_ids, (set, frozenset)):
        type_ids = sorted(type_ids)
    wanted = np.atleast_1d(np.asarray(type_ids))
    if wanted.dtype.kind not in "iu":
        raise TypeError(f"`type_ids` must be an int or integers, got {type_ids!r}.")
    ids = np.unique(inst)
    ids = ids[ids != 0]
    types = _lookup_types(ids, keys, values)
    return ids[np.isin(types, wanted)].astype(np.int64)


def _check_inst_types(inst_types: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(keys, values)`` arrays of an instance -> type table."""
    if not isinstance(inst_types, Mapping):
        raise TypeError(f"`inst_types` must map instance id -> type id, got {type(inst_types).__name__}.")
    keys = np.array([int(k) for k in inst_types], np.int64)
    values = np.array([int(v) for v in inst_types.values()], np.int64)
    if keys.size and keys.min() < 0:
        raise ValueError(
            f"`inst_types` has a negative instance id {keys.min()}; instance ids are labels >= 1."
        )
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"`inst_types` has types outside 0..255 ({values.min()}..{values.max()}).")
    order = np.argsort(keys)
    return keys[order], values[order].astype(np.uint8)


def _lookup_types(labels: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Type of every entry of ``labels`` (0 stays 0); raises listing labels absent from ``keys``."""
    flat = labels.ravel()
    nonzero = flat != 0
    max_label = int(flat.max()) if flat.size else 0
    if max_label <= max(flat.size, 1 << 16):
        # dense look-up table: one gather, no sort of the pixels
        table = np.full(max_label + 1, -1, np.int16)
        inside = keys <= max_label
        table[keys[inside]] = values[inside]
        table[0] = 0
        out = table[flat]
    else:  # sparse (e.g. 64-bit) labels: binary search in the sorted keys
        sorted_keys = keys.astype(np.uint64 if labels.dtype == np.uint64 else np.int64)
        out = np.where(nonzero, -1, 0).astype(np.int16)
        if keys.size:
            pos = np.minimum(np.searchsorted(sorted_keys, flat), keys.size - 1)
            found = nonzero & (sorted_keys[pos] == flat)
            out[found] = values[pos[found]]
    missing = np.unique(flat[out < 0])
    if missing.size:
        shown = ", ".join(str(int(i)) for i in missing[:10])
        raise ValueError(
            f"`inst_types` has no type for {missing.size} instance(s) of `inst` ({shown}"
            f"{', ...' if missing.size > 10 else ''}); give every nucleus a type (0 for unknown)."
        )
    return out.astype(np.uint8).reshape(labels.shape)


def _check_type_map(type_map: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    type_map = check_instance_mask(type_map, "type_map")
    if shape is not None and type_map.shape != tuple(shape):
        raise ValueError(
            f"`type_map` has shape {type_map.shape} but `inst` has {tuple(shape)}; they must match."
        )
    return type_map
