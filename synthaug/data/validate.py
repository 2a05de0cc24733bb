"""Agreement checks between an image, its instance mask and its type table, and id compaction.

Every reader funnels its arrays through :func:`build_sample`, so a mismatch in any dataset is
reported the same way: the file, what disagrees, and how to fix or skip it.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping

import numpy as np
from skimage.segmentation import relabel_sequential

from synthaug.conditions import type_map_from_instances
from synthaug.data.io import as_integer_labels
from synthaug.data.record import Sample


def compact_instances(
    inst: np.ndarray, inst_types: Mapping[int, int] | None = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber instance ids to ``1..N`` (in increasing order of the old id) and remap the type table.

    Args:
        inst: ``(H, W)`` integer instance mask, 0 = background, ids need not be contiguous.
        inst_types: optional old id -> type table; entries for ids absent from ``inst`` are dropped.

    Returns:
        ``(inst, inst_types)``: the int32 mask with ids ``1..N`` and the table keyed by the new ids.
    """
    inst = as_integer_labels(inst, "`inst`")
    relabelled, forward, _ = relabel_sequential(inst)
    table = {} if inst_types is None else dict(inst_types)
    ids = np.unique(inst[inst > 0])
    new_ids = np.asarray(forward[ids]) if ids.size else ids
    remapped = {int(new): int(table[int(old)]) for old, new in zip(ids, new_ids) if int(old) in table}
    return relabelled.astype(np.int32, copy=False), remapped


def build_sample(
    image: np.ndarray,
    inst: np.ndarray,
    inst_types: Mapping[int, int] | None,
    *,
    valid_types: Collection[int],
    meta: Mapping[str, str],
    name: str,
    group: str = "",
    where: str = "",
    strict: bool = True,
) -> Sample:
    """Check that image, mask and type table agree, compact the ids and return a :class:`Sample`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        inst: ``(H, W)`` integer instance mask (float arrays with whole values are accepted).
        inst_types: instance id -> type id for every id in ``inst``; ``None`` types every nucleus 1
            (datasets without nucleus classes, e.g. MoNuSeg).
        valid_types: the type ids the dataset defines.
        meta: metadata strings (``tissue``, ``assay``, ``indication``, ``source``, ...).
        name: unique sample name.
        group: the tile the sample belongs to (defaults to ``name``).
        where: the file(s) the arrays came from, quoted in every error.
        strict: if False, type-table entries whose id is absent from the mask are dropped with a
            warning instead of raising (some releases keep entries of nuclei erased by cropping).

    Returns:
        The validated sample with ids ``1..N`` and ``types`` painted from the table.

    Raises:
        ValueError: naming ``where`` when shapes differ, the mask and type table disagree or a type
            id is not one of ``valid_types``.
    """
    where = where or name
    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[-1] != 3
        or image.dtype != np.uint8
    ):
        raise ValueError(
            f"{where}: image must be (H, W, 3) uint8, got {getattr(image, 'dtype', type(image).__name__)} "
            f"with shape {getattr(image, 'shape', None)}."
        )
    inst = as_integer_labels(inst, where)
    if inst.shape != image.shape[:2]:
        raise ValueError(
            f"{where}: the instance mask is {inst.shape} but the image is {image.shape[:2]}; "
            "they must have the same height and width."
        )
    mask_ids = set(np.unique(inst[inst > 0]).tolist())
    if inst_types is None:
        table = dict.fromkeys(mask_ids, 1)
    else:
        table = {int(k): int(v) for k, v in inst_types.items()}
    not_in_mask = sorted(set(table) - mask_ids)
    if not_in_mask:
        message = (
            f"{where}: {len(not_in_mask)} id(s) of the type table are missing from the instance mask "
            f"(first: {not_in_mask[:5]})"
        )
        if strict:
            raise ValueError(message + "; pass strict=False to the reader to drop them.")
        warnings.warn(message + "; dropped.", stacklevel=2)
        for key in not_in_mask:
            del table[key]
    untyped = sorted(mask_ids - set(table))
    if untyped:
        raise ValueError(
            f"{where}: {len(untyped)} instance id(s) of the mask have no entry in the type table "
            f"(first: {untyped[:5]}); every nucleus needs a type."
        )
    bad_types = sorted({t for t in table.values() if t not in valid_types})
    if bad_types:
        raise ValueError(
            f"{where}: type id(s) {bad_types} are not among this dataset's types {sorted(valid_types)}."
        )
    inst, table = compact_instances(inst, table)
    types = type_map_from_instances(inst, table)
    return Sample(
        image=image, inst=inst, types=types, inst_types=table, meta=dict(meta), name=name, group=group
    )
