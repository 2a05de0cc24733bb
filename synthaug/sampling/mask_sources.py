"""Mask sources: where the layouts that MSDM paints come from.

A mask source is an indexable, endless stream of :class:`MaskRecord` (instance map, type map,
per-instance types, metadata, source name). Item ``i`` depends only on ``(seed, i)``, so
distributed ranks can draw disjoint index ranges of one source and a resumed run redraws exactly
the same masks.

- :class:`RealMaskSource` reuses annotated masks (the MSDM paper's approach), each pass over the
  samples in a fresh seeded order, with edits that turn one annotation into many layouts:
  :class:`DihedralEdit` (flips/rot90), :class:`ElasticEdit`, :class:`CropEdit`, and
  :class:`ReplaceInstancesEdit` (move or copy nuclei of a chosen type into free space).
- :class:`LayoutMaskSource` draws procedural layouts (``synthaug.data.layouts.generate_layout``).

Every edit returns a valid layout: no overlaps, ids compact 1..N, type map equal to the
per-instance types painted onto the instance map (``Layout.validate()`` holds).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import ndimage, signal
from skimage.transform import warp

from synthaug._validation import check_int, check_rgb_image
from synthaug.data.layouts import Layout, generate_layout, sanitize_instances
from synthaug.data.record import Sample
from synthaug.data.splits import BenchmarkSplit
from synthaug.data.vocabulary import CONSEP_TYPES, TypeVocabulary, resolve_type

Edit = Callable[[Layout, np.random.Generator], Layout]


@dataclass(repr=False, eq=False)  # like Layout: short repr, identity equality
class MaskRecord(Layout):
    """A :class:`~synthaug.data.layouts.Layout` drawn from a mask source.

    Attributes:
        source: the name of the mask source that produced it.
        index: its item index in that source.
        colour: ``(6,)`` float32 fg/bg mean RGB in [0, 1] of the image the mask came from (the
            MSDM colour condition), or ``None`` for masks without an image.
    """

    source: str = ""
    index: int = -1
    colour: np.ndarray | None = None


@runtime_checkable
class MaskSource(Protocol):
    """An endless, reproducible stream of masks: ``source[i]`` depends only on ``(seed, i)``.

    ``vocabulary`` is the type vocabulary of its masks (``None`` when unknown): targeting a class by
    name resolves it there, and a cache records its names.
    """

    name: str
    vocabulary: TypeVocabulary | None

    def __getitem__(self, index: int) -> MaskRecord: ...

    def __call__(self, index: int) -> MaskRecord: ...

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[MaskRecord]: ...


class IndexedMaskSource:
    """Base class of the mask sources here: subclasses implement ``draw(index)``.

    It adds index checks, ``source(i)``, ``records(start, stop)`` and ``_rng(i)``, the per-item
    generator seeded with ``[seed, i]``.
    """

    name: str
    seed: int
    vocabulary: TypeVocabulary | None = None

    def __getitem__(self, index: int) -> MaskRecord:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise IndexError(f"mask source index must be a non-negative int, got {index!r}.")
        return self.draw(int(index))

    def __call__(self, index: int) -> MaskRecord:
        """``source(i)`` is ``source[i]``: samplers accept any callable ``index -> layout``."""
        return self[index]

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[MaskRecord]:
        """Items ``start, start+1, ...`` up to ``stop`` (exclusive; ``None`` = endless)."""
        index = start
        while stop is None or index < stop:
            yield self[index]
            index += 1

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def draw(self, index: int) -> MaskRecord:
        """Item ``index``; must depend only on ``(self.seed, index)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement draw(index).")


class RealMaskSource(IndexedMaskSource):
    """Annotated masks, re-used with random edits.

    Item ``i`` takes sample ``perm[i % n]`` of pass ``i // n`` (a seeded permutation per pass, so
    every sample is used once per pass) and applies ``edits`` in order, then a random crop to
    ``size`` when given.

    Args:
        samples: annotated ``Sample`` records or ``Layout`` objects. A sample's image only
            gives its record's ``colour``: background mean RGB of the (cropped) window, and
            foreground mean RGB of that window's nuclei per type, weighted by each type's pixels
            in the edited layout, so a crop of lumen or a layout enriched in one type asks for
            the colour that its own nuclei and background have.
        edits: edit objects (``DihedralEdit()``, ``ElasticEdit(...)``, ``CropEdit(...)``,
            ``ReplaceInstancesEdit(...)``, or any ``(layout, rng) -> layout`` callable) or their names
            ``"dihedral"``, ``"elastic"``, ``"replace"`` (default settings). Empty = masks as they are.
        size: ``(height, width)`` of the output; crops larger masks at a random position.
        seed: base seed.
        name: recorded as each record's ``source``.
        split: the benchmark split the samples come from; each must then be one of its training
            samples (``BenchmarkSplit.check_training_only``), so no held-out mask is reused.
        vocabulary: the masks' type vocabulary (``reader.vocabulary``); defaults to ``split``'s when
            it names types. Lets ``ReplaceInstancesEdit("epithelial")`` and targeting resolve names.

    Raises:
        TypeError, ValueError: for empty or wrongly typed ``samples``, unknown edit names, a
            ``size`` larger than some sample, or samples outside ``split.train``.
    """

    def __init__(
        self,
        samples: Sequence[Sample | Layout],
        *,
        edits: Sequence[str | Edit] = ("dihedral", "elastic"),
        size: tuple[int, int] | None = None,
        seed: int = 0,
        name: str = "real",
        split: BenchmarkSplit | None = None,
        vocabulary: TypeVocabulary | Mapping[int, str] | None = None,
    ):
        if not isinstance(samples, Sequence) or not samples:
            raise ValueError("`samples` must be a non-empty sequence of Sample or Layout records.")
        if not all(isinstance(s, (Sample, Layout)) for s in samples):
            raise TypeError("`samples` must contain synthaug.data.Sample or Layout records only.")
        if split is not None:
            if not all(isinstance(s, Sample) for s in samples):
                raise TypeError("with `split`, pass the split's Sample records (a Layout has no image).")
            split.check_training_only(samples, purpose="a mask source")
        if vocabulary is not None:
            self.vocabulary = TypeVocabulary.coerce(vocabulary)
        elif split is not None and split.type_names:
            self.vocabulary = split.vocabulary
        self.layouts = [s if isinstance(s, Layout) else Layout.from_sample(s) for s in samples]
        # Checked once here, kept as the caller's arrays (no float copy): colour is measured per draw.
        self.images = [s.image if isinstance(s, Sample) else None for s in samples]
        for i, image in enumerate(self.images):
            if image is not None:
                check_rgb_image(image, f"samples[{i}].image", shape_hw=self.layouts[i].shape)
        self.edits = [_resolve_edit(e, self.vocabulary) for e in edits]
        self.crop = None
        if size is not None:
            self.crop = CropEdit(*size)
            small = [
                lay.name
                for lay in self.layouts
                if lay.shape[0] < self.crop.height or lay.shape[1] < self.crop.width
            ]
            if small:
                raise ValueError(f"`size` {tuple(size)} is larger than some samples, e.g. {small[0]!r}.")
        self.seed, self.name = int(seed), name

    def draw(self, index: int) -> MaskRecord:
        n = len(self.layouts)
        order = np.random.default_rng([self.seed, index // n, 1]).permutation(n)
        base, image = self.layouts[order[index % n]], self.images[order[index % n]]
        rng = self._rng(index)
        layout = Layout(base.inst.copy(), base.types.copy(), base.inst_types, base.meta, base.name)
        if self.crop is not None:
            # Cropped first, with its image, so the colour is the window's and not the whole tile's.
            layout, (y, x) = self.crop.crop(layout, rng)
            if image is not None:
                image = image[y : y + self.crop.height, x : x + self.crop.width]
        colour = None if image is None else _window_colours(image, layout)
        for edit in self.edits:
            layout = edit(layout, rng)
        meta = base.meta | {"mask_source": self.name, "mask_origin": base.name}
        return MaskRecord(
            layout.inst,
            layout.types,
            layout.inst_types,
            meta,
            f"{base.name}#{index}",
            source=self.name,
            index=index,
            colour=None if colour is None else colour.condition(layout),
        )


@dataclass(frozen=True)
class _WindowColours:
    """Mean RGB of one image window: its background, and its nuclei per type (row ``1 + type``)."""

    background: np.ndarray  # (3,)
    per_type: np.ndarray  # (1 + max type + 1, 3); rows of types absent from the window are unused
    present: np.ndarray  # (rows,) bool

    def condition(self, layout: Layout) -> np.ndarray:
        """``(6,)`` [fg, bg] mean RGB for ``layout``: per-type means weighted by its type pixels."""
        groups = _pixel_groups(layout)
        counts = np.bincount(groups.ravel(), minlength=len(self.per_type))[: len(self.per_type)]
        counts[~self.present] = 0  # a type the window never showed (cannot arise from its own edits)
        counts[0] = 0
        if counts.sum() == 0:
            fg = np.zeros(3)  # no nuclei: the fg half of the condition paints nothing
        else:
            fg = counts @ self.per_type / counts.sum()
        return np.concatenate([fg, self.background]).astype(np.float32)


def _pixel_groups(layout: Layout) -> np.ndarray:
    """0 for background, ``1 + type`` for nucleus pixels (untyped nuclei are group 1)."""
    return np.where(layout.inst > 0, layout.types.astype(np.int64) + 1, 0)


def _window_colours(image: np.ndarray, layout: Layout) -> _WindowColours:
    pixels = image.reshape(-1, 3).astype(np.float64)
    if image.dtype == np.uint8:
        pixels /= 255.0
    groups = _pixel_groups(layout).ravel()
    rows = int(groups.max()) + 1 if groups.size else 1
    counts = np.bincount(groups, minlength=rows)
    sums = np.stack([np.bincount(groups, weights=pixels[:, c], minlength=rows) for c in range(3)], axis=1)
    means = sums / np.maximum(counts, 1)[:, None]
    return _WindowColours(background=means[0], per_type=means, present=counts > 0)


class LayoutMaskSource(IndexedMaskSource):
    """Procedural layouts from :func:`~synthaug.data.layouts.generate_layout`.

    Args:
        height, width: layout size.
        seed: base seed; item ``i`` uses ``np.random.default_rng([seed, i])``.
        meta: metadata stored on every record (e.g. ``{"tissue": "colon"}``).
        name: recorded as each record's ``source``.
        **layout_kwargs: ``type_shares``, ``density``, ``size``, ``gap`` of ``generate_layout``.

    Raises:
        TypeError: for a keyword ``generate_layout`` does not take.
    """

    vocabulary = CONSEP_TYPES  # generated layouts use CoNSeP's types

    def __init__(
        self,
        height: int = 256,
        width: int = 256,
        *,
        seed: int = 0,
        meta: Mapping[str, str] | None = None,
        name: str = "layout",
        **layout_kwargs,
    ):
        try:  # fail now, naming the keyword, rather than at the first draw
            inspect.signature(generate_layout).bind(height, width, **layout_kwargs)
        except TypeError as err:
            raise TypeError(f"`layout_kwargs` do not fit generate_layout: {err}.") from None
        generate_layout(height, width, seed=0, **layout_kwargs)  # validates values the same way
        self.height, self.width, self.layout_kwargs = height, width, dict(layout_kwargs)
        self.meta = dict(meta or {})
        self.seed, self.name = int(seed), name

    def draw(self, index: int) -> MaskRecord:
        layout = generate_layout(self.height, self.width, seed=self._rng(index), **self.layout_kwargs)
        meta = layout.meta | self.meta | {"mask_source": self.name}
        return MaskRecord(
            layout.inst,
            layout.types,
            layout.inst_types,
            meta,
            f"{self.name}#{index}",
            source=self.name,
            index=index,
        )


# --- edits -------------------------------------------------------------------------------------


class DihedralEdit:
    """Random flip and rotation by a multiple of 90 degrees (only 0/180 on non-square masks)."""

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        square = layout.shape[0] == layout.shape[1]
        k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
        flip = bool(rng.integers(2))
        out = []
        for arr in (layout.inst, layout.types):
            arr = np.rot90(arr, k)
            out.append(np.ascontiguousarray(arr[:, ::-1] if flip else arr))
        return Layout(out[0], out[1], layout.inst_types, layout.meta, layout.name)


@dataclass(frozen=True)
class ElasticEdit:
    """Smooth random displacement field, nearest-neighbour resampling, then re-validation.

    Args:
        alpha: RMS displacement in pixels.
        sigma: smoothness of the field (Gaussian sigma, pixels); larger bends whole regions.
        min_area: fragments smaller than this (px) are dropped after warping.
    """

    alpha: float = 3.0
    sigma: float = 16.0
    min_area: int = 8

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.sigma > 0):
            raise ValueError(
                f"ElasticEdit needs `alpha` >= 0 and `sigma` > 0, "
                f"got alpha={self.alpha}, sigma={self.sigma}."
            )

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        height, width = layout.shape
        field = [_smooth_noise(rng, height, width, self.sigma) * self.alpha for _ in range(2)]
        rows, cols = np.mgrid[:height, :width].astype(np.float64)
        # order=0: labels must never be interpolated into ids that do not exist.
        warped = warp(
            layout.inst,
            np.stack([rows + field[0], cols + field[1]]),
            order=0,
            mode="constant",
            cval=0,
            preserve_range=True,
        ).astype(np.int32)
        inst, types, inst_types = sanitize_instances(warped, layout.inst_types, min_area=self.min_area)
        return Layout(inst, types, inst_types, layout.meta, layout.name)


@dataclass(frozen=True)
class CropEdit:
    """Crop a ``height x width`` window at a random position; cut nuclei under ``min_area`` go."""

    height: int
    width: int
    min_area: int = 8

    def __post_init__(self) -> None:
        for arg in ("height", "width"):
            check_int(getattr(self, arg), f"CropEdit {arg}", minimum=1)

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        return self.crop(layout, rng)[0]

    def crop(self, layout: Layout, rng: np.random.Generator) -> tuple[Layout, tuple[int, int]]:
        """The cropped layout and the window's top-left ``(y, x)`` (to crop an image alike)."""
        height, width = layout.shape
        if height < self.height or width < self.width:
            raise ValueError(f"cannot crop {self.height}x{self.width} from a {height}x{width} mask.")
        y = int(rng.integers(height - self.height + 1))
        x = int(rng.integers(width - self.width + 1))
        window = layout.inst[y : y + self.height, x : x + self.width]
        inst, types, inst_types = sanitize_instances(window, layout.inst_types, min_area=self.min_area)
        return Layout(inst, types, inst_types, layout.meta, layout.name), (y, x)


@dataclass(frozen=True)
class ReplaceInstancesEdit:
    """Move or copy nuclei of a chosen type into free space, without overlaps.

    Args:
        type: nucleus type (id, or name such as ``"epithelial"`` resolved in ``vocabulary``);
            ``None`` = any type.
        mode: ``"move"`` (the original disappears) or ``"copy"`` (adds new nuclei).
        fraction: share of that type's nuclei to move/copy (at least one when any exist).
        gap: free pixels kept between a placed nucleus and every other one.
        vocabulary: the masks' type vocabulary; ``RealMaskSource`` binds its own when not given.
    """

    type: int | str | None = None
    mode: str = "move"
    fraction: float = 0.5
    gap: int = 1
    vocabulary: TypeVocabulary | None = None
    type_id: int | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.mode not in ("move", "copy"):
            raise ValueError(f"`mode` must be 'move' or 'copy', got {self.mode!r}.")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"`fraction` must lie in (0, 1], got {self.fraction}.")
        if self.type is not None:
            object.__setattr__(self, "type_id", resolve_type(self.type, self.vocabulary))

    def bind(self, vocabulary: TypeVocabulary | None) -> ReplaceInstancesEdit:
        """This edit with ``vocabulary`` to resolve a type name in (an explicit one is kept)."""
        if self.vocabulary is not None or vocabulary is None:
            return self
        return replace(self, vocabulary=vocabulary)

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Layout:
        if self.type is not None and self.type_id is None:
            raise ValueError(
                f"ReplaceInstancesEdit(type={self.type!r}) names a class but has no vocabulary to find "
                "its id: pass vocabulary=reader.vocabulary, or use it inside "
                "RealMaskSource(..., vocabulary=...)."
            )
        ids = [k for k, t in layout.inst_types.items() if self.type is None or t == self.type_id]
        if not ids:
            return layout
        # A border-cut nucleus placed inside the tile would show its straight cut edge.
        whole = whole_instance_shapes(layout.inst)
        ids = [k for k in ids if k in whole] or ids
        chosen = rng.choice(ids, size=max(1, int(round(self.fraction * len(ids)))), replace=False)
        inst, inst_types = layout.inst.copy(), dict(layout.inst_types)
        for k in chosen:
            if self.mode == "copy":
                paste_copy(inst, inst_types, int(k), rng=rng, gap=self.gap)
            else:
                move_instance(inst, int(k), rng=rng, gap=self.gap)
        inst, types, inst_types = sanitize_instances(inst, inst_types, min_area=1)
        return Layout(inst, types, inst_types, layout.meta, layout.name)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit std; smoothing via FFT costs the same for any sigma."""
    spectrum = ndimage.fourier_gaussian(np.fft.rfft2(rng.standard_normal((height, width))), sigma, n=width)
    field = np.fft.irfft2(spectrum, s=(height, width))
    return field / (field.std() + 1e-12)


_EDITS: dict[str, Callable[[], Edit]] = {
    "dihedral": DihedralEdit,
    "elastic": ElasticEdit,
    "replace": ReplaceInstancesEdit,
}


def _resolve_edit(edit: str | Edit, vocabulary: TypeVocabulary | None) -> Edit:
    if isinstance(edit, str):
        if edit not in _EDITS:
            raise ValueError(f"unknown edit {edit!r}; valid names: {sorted(_EDITS)}, or an edit object.")
        edit = _EDITS[edit]()
    if isinstance(edit, ReplaceInstancesEdit):
        edit = edit.bind(vocabulary)
        if edit.type is not None and edit.type_id is None:
            raise ValueError(
                f"edit ReplaceInstancesEdit(type={edit.type!r}) names a class, but the mask source has no "
                "vocabulary: pass RealMaskSource(..., vocabulary=reader.vocabulary) or a type id."
            )
        return edit
    if not callable(edit):
        raise TypeError(f"`edits` items must be names or callables (layout, rng) -> layout, got {edit!r}.")
    return edit


# --- free-space placement (used by the edits above and by targeting) ----------------------------


def instance_shape(inst: np.ndarray, instance_id: int) -> np.ndarray:
    """The boolean pixel mask of one instance, cropped to its bounding box."""
    ys, xs = np.nonzero(inst == instance_id)
    if not len(ys):
        raise ValueError(f"instance id {instance_id} does not occur in `inst`.")
    return inst[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] == instance_id


def find_free_anchor(
    inst: np.ndarray, shape: np.ndarray, *, rng: np.random.Generator, gap: int = 1, trials: int = 256
) -> tuple[int, int] | None:
    """A uniformly random top-left corner where ``shape`` fits inside the tile on background only.

    The shape keeps ``gap`` free pixels (8-connected: diagonal contact counts) to every existing
    nucleus. First up to ``trials`` random corners are tested, in batches of 32; the first free one
    is a uniform draw among all free corners (rejection sampling). Only in a crowded tile where all
    trials hit does one FFT correlation of the occupied map with the shape test every corner.

    Returns:
        ``(row, col)``, or ``None`` when the shape fits nowhere.
    """
    (height, width), (h, w) = inst.shape, shape.shape
    if h > height or w > width:
        return None
    # Growing the shape by `gap` (instead of every nucleus) tests the same condition; padding the
    # occupied map by `gap` lets the grown shape reach past the tile border.
    occupied = np.pad(inst > 0, gap)
    grown = np.pad(shape, gap)
    if gap > 0:
        grown = ndimage.binary_dilation(grown, structure=np.ones((3, 3), bool), iterations=gap)
    offsets = np.argwhere(grown)
    for _ in range(max(1, trials // 32)):  # small batches: in a sparse tile the first one succeeds
        rows = rng.integers(0, height - h + 1, 32)
        cols = rng.integers(0, width - w + 1, 32)
        hit = occupied[rows[:, None] + offsets[:, 0], cols[:, None] + offsets[:, 1]].any(axis=1)
        free = np.flatnonzero(~hit)
        if len(free):
            return int(rows[free[0]]), int(cols[free[0]])
    overlap = signal.correlate(occupied.astype(np.float32), grown.astype(np.float32), "valid", method="fft")
    anchors = np.argwhere(overlap < 0.5)  # FFT round-off: counts are whole numbers
    if not len(anchors):
        return None
    row, col = anchors[rng.integers(len(anchors))]
    return int(row), int(col)


def whole_instance_shapes(inst: np.ndarray) -> dict[int, np.ndarray]:
    """Bounding-box masks of the nuclei not cut by the tile border (the ones worth copying)."""
    shapes = {}
    for k, box in enumerate(ndimage.find_objects(inst), start=1):
        if box is None:
            continue
        rows, cols = box
        if rows.start > 0 and cols.start > 0 and rows.stop < inst.shape[0] and cols.stop < inst.shape[1]:
            shapes[k] = inst[box] == k
    return shapes


def paste_shape(
    inst: np.ndarray,
    inst_types: dict[int, int],
    shape: np.ndarray,
    type_id: int,
    *,
    rng: np.random.Generator,
    gap: int = 1,
) -> int | None:
    """Paste a nucleus shape (randomly flipped/rotated) into free space, in place.

    The new nucleus gets id ``max(inst_types) + 1`` and ``type_id``, added to ``inst_types``.

    Returns:
        The new id, or ``None`` when there is no room (``inst`` unchanged).
    """
    shape = np.rot90(shape, int(rng.integers(4)))
    if rng.integers(2):
        shape = shape[:, ::-1]
    anchor = find_free_anchor(inst, shape, rng=rng, gap=gap)
    if anchor is None:
        return None
    new_id = max(inst_types, default=0) + 1
    window = inst[anchor[0] : anchor[0] + shape.shape[0], anchor[1] : anchor[1] + shape.shape[1]]
    window[shape] = new_id
    inst_types[new_id] = int(type_id)
    return new_id


def paste_copy(
    inst: np.ndarray, inst_types: dict[int, int], instance_id: int, *, rng: np.random.Generator, gap: int = 1
) -> int | None:
    """Copy nucleus ``instance_id`` into free space, in place (see :func:`paste_shape`)."""
    shape = instance_shape(inst, instance_id)
    return paste_shape(inst, inst_types, shape, inst_types[instance_id], rng=rng, gap=gap)


def move_instance(inst: np.ndarray, instance_id: int, *, rng: np.random.Generator, gap: int = 1) -> bool:
    """Move one nucleus (same orientation) to a random free place, in place.

    Returns:
        Whether it moved; when there is no room it stays where it was.
    """
    shape = instance_shape(inst, instance_id)
    original = inst == instance_id
    inst[original] = 0
    anchor = find_free_anchor(inst, shape, rng=rng, gap=gap)
    if anchor is None:
        inst[original] = instance_id
        return False
    window = inst[anchor[0] : anchor[0] + shape.shape[0], anchor[1] : anchor[1] + shape.shape[1]]
    window[shape] = instance_id
    return True


__all__ = [
    "DihedralEdit",
    "ElasticEdit",
    "IndexedMaskSource",
    "LayoutMaskSource",
    "MaskRecord",
    "MaskSource",
    "CropEdit",
    "RealMaskSource",
    "ReplaceInstancesEdit",
    "find_free_anchor",
    "instance_shape",
    "move_instance",
    "paste_copy",
    "paste_shape",
    "whole_instance_shapes",
]
