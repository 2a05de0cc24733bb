"""Cutting large tiles into patches (with overlap) and cropping samples.

Every patch keeps its tile's ``group``, so a split made after tiling still keeps all patches of a
tile together, and instance ids are compacted to ``1..N`` per patch (nuclei cut by the border keep
the part inside).
"""

from __future__ import annotations

from collections.abc import Iterable

from synthaug.data.record import Sample
from synthaug.data.validate import compact_instances


def _check_size(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ValueError(f"`{name}` must be a positive int or a (height, width) pair of them, got {value!r}.")
    return size


def _axis_starts(length: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] + patch < length:  # the last patch is aligned to the edge instead of padding
        starts.append(length - patch)
    return starts


def tile_positions(
    height: int, width: int, patch_size: int | tuple[int, int], *, overlap: int | tuple[int, int] = 0
) -> list[tuple[int, int]]:
    """Top-left corners of patches covering a ``height`` x ``width`` tile, row-major.

    Patches step by ``patch_size - overlap``; when the step does not divide the tile, the last row
    and column are shifted to end at the tile's edge (so they overlap a little more) rather than
    padding with pixels that do not exist.

    Args:
        height: tile height in px.
        width: tile width in px.
        patch_size: patch side, or ``(height, width)``.
        overlap: pixels shared by neighbouring patches, or ``(rows, cols)``; smaller than the patch.

    Returns:
        ``[(top, left), ...]``.

    Raises:
        ValueError: if the patch is larger than the tile or the overlap is not smaller than the patch.
    """
    ph, pw = _check_size(patch_size, "patch_size")
    oy, ox = (overlap, overlap) if isinstance(overlap, int) else overlap
    if not (0 <= oy < ph and 0 <= ox < pw):
        raise ValueError(
            f"`overlap` must lie in [0, patch_size), got {overlap!r} for patch_size {patch_size!r}."
        )
    if ph > height or pw > width:
        raise ValueError(
            f"`patch_size` {(ph, pw)} is larger than the {height}x{width} tile; "
            "choose a smaller patch or pad the tile."
        )
    return [(y, x) for y in _axis_starts(height, ph, ph - oy) for x in _axis_starts(width, pw, pw - ox)]


def crop_sample(
    sample: Sample, top: int, left: int, height: int, width: int, *, name: str | None = None
) -> Sample:
    """Crop a sample; ids are compacted and the type table keeps only nuclei inside the crop.

    Args:
        sample: the sample to crop.
        top: first row.
        left: first column.
        height: crop height.
        width: crop width.
        name: the crop's name (default ``"<name>_y<top>_x<left>"``).

    Returns:
        A new sample with the same ``meta`` and ``group``.

    Raises:
        ValueError: if the window does not lie inside the sample.
    """
    if not isinstance(sample, Sample):
        raise TypeError(f"`sample` must be a synthaug.data.Sample, got {type(sample).__name__}.")
    h, w = sample.shape
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
        raise ValueError(
            f"crop window top={top}, left={left}, {height}x{width} does not fit inside sample "
            f"{sample.name!r} of {h}x{w}."
        )
    rows, cols = slice(top, top + height), slice(left, left + width)
    inst, table = compact_instances(sample.inst[rows, cols], sample.inst_types)
    return Sample(
        image=sample.image[rows, cols].copy(),
        inst=inst,
        types=sample.types[rows, cols].copy(),
        inst_types=table,
        meta=dict(sample.meta),
        name=name if name is not None else f"{sample.name}_y{top}_x{left}",
        group=sample.group,
    )


def tile_sample(
    sample: Sample, patch_size: int | tuple[int, int], *, overlap: int | tuple[int, int] = 0
) -> list[Sample]:
    """Cut a sample into patches on the grid of :func:`tile_positions`.

    Example:
        >>> patches = tile_sample(tile, 256, overlap=32)  # doctest: +SKIP

    Returns:
        The patches, row-major, named ``"<name>_y<top>_x<left>"``, all in the tile's ``group``.
    """
    ph, pw = _check_size(patch_size, "patch_size")
    return [
        crop_sample(sample, y, x, ph, pw) for y, x in tile_positions(*sample.shape, (ph, pw), overlap=overlap)
    ]


def tile_samples(
    samples: Iterable[Sample], patch_size: int | tuple[int, int], *, overlap: int | tuple[int, int] = 0
) -> list[Sample]:
    """:func:`tile_sample` over many samples, concatenated."""
    return [patch for sample in samples for patch in tile_sample(sample, patch_size, overlap=overlap)]
