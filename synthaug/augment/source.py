"""``SyntheticSource``: the array-level core that ``SyntheticAugment`` and ``SyntheticMixDataset`` wrap.

A source holds one finished cache (decoded in memory, or streamed from zarr), the per-sample draw
weights of the requested nucleus types, and the size policy; it turns a draw (a cache index and a
crop offset) into arrays: ``image (3, H, W) uint8``, ``inst (H, W) int32``, ``types (H, W) uint8``.
It holds no random state of its own: the MONAI transform draws from its ``self.R``, the dataset from
its per-epoch tables, the way ``ComputeHoVerMaps`` does the work behind ``ComputeHoVerMapsd``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from synthaug._validation import check_choice
from synthaug.augment._draws import check_cache, check_types, draw_probabilities
from synthaug.augment._fit import CROPS, check_tile_size, fit_tile
from synthaug.augment._preload import PreloadedRecords, resolve_preload

LABEL_KINDS = ("type", "foreground")
_ARRAYS = ("image", "inst", "type")  # `meta` is read only when asked: it is one more zarr chunk


def open_cache(cache: Any) -> Any:
    """A ``SyntheticCache`` from a cache object or its path/URL (opened read-only)."""
    if isinstance(cache, (str, os.PathLike)):
        from synthaug.sampling.cache import SyntheticCache

        return SyntheticCache.open(os.fspath(cache), mode="r")
    return cache


class SyntheticSource:
    """Cached synthetic pairs, drawn by nucleus-type weights and fitted to the real samples' size.

    Args:
        cache: a ``SyntheticCache`` or the path/URL of one.
        target_types: nucleus type ids (1-based) to over-represent.
        type_weights: type id -> draw weight.
        count_by: ``"instances"`` or ``"pixels"``: which per-sample counts weight the draws.
        crop: ``"random"``, ``"center"`` or ``"resize"`` (see ``synthaug.augment._fit``).
        label_kind: what the real label holds: ``"type"`` (type map) or ``"foreground"`` (0/1).
        num_types: the real data's number of types; a cache with another number is refused.
        type_names: the real data's type id -> class name; a cache that records other names is refused.
        preload: decode the whole cache into memory now (``N x H x W x 8`` bytes), so draws cost no
            reading; ``"auto"`` does so for caches up to 1 GiB decoded and streams larger ones.

    Raises:
        ValueError: an empty or mismatched cache, bad options or types.
        TypeError: ``cache`` is not a ``SyntheticCache``.

    Example:
        >>> source = SyntheticSource("cache.zarr", target_types=[3])  # doctest: +SKIP
        >>> index = source.index_at(0.42)  # doctest: +SKIP
        >>> image, inst, types = source.fit(index, (128, 128), offset=(0.1, 0.7))  # doctest: +SKIP
    """

    def __init__(
        self,
        cache: Any,
        *,
        target_types: Iterable[int] | None = None,
        type_weights: Mapping[int, float] | None = None,
        count_by: str = "instances",
        crop: str = "random",
        label_kind: str = "type",
        num_types: int | None = None,
        type_names: Mapping[int, str] | None = None,
        preload: bool | str = "auto",
    ) -> None:
        self.cache = open_cache(cache)
        check_cache(self.cache, num_types=num_types, type_names=type_names)
        self.num_types = int(self.cache.num_types)
        self.tile_hw = (int(self.cache.height), int(self.cache.width))
        self.crop = check_choice(crop, "crop", CROPS)
        self.label_kind = check_choice(label_kind, "label_kind", LABEL_KINDS)
        self.target_types = check_types(target_types, "target_types", self.num_types)
        self.probabilities = draw_probabilities(
            self.cache, target_types=self.target_types, type_weights=type_weights, count_by=count_by
        )
        # One uniform + searchsorted per draw instead of choice(p=...), which is O(N) per call.
        self._cdf = np.cumsum(self.probabilities)
        self._cdf /= self._cdf[-1]
        # Preloaded records need no reading; otherwise every draw reads three zarr chunks.
        self.records = PreloadedRecords(self.cache) if resolve_preload(self.cache, preload) else self.cache

    def __len__(self) -> int:
        return len(self.probabilities)

    @property
    def preloaded(self) -> bool:
        """Whether the cache is held decoded in memory."""
        return isinstance(self.records, PreloadedRecords)

    def index_at(self, u: float) -> int:
        """The cache index whose share of the draw probabilities holds the uniform ``u`` in ``[0, 1)``."""
        return min(int(np.searchsorted(self._cdf, u, side="right")), len(self._cdf) - 1)

    def check_size(self, out_hw: tuple[int, int]) -> None:
        """Raise ``ValueError`` when the cache tiles cannot be fitted to real samples of ``out_hw``."""
        check_tile_size(self.tile_hw, out_hw, self.crop)

    def check_label(self, label: Any, key: Hashable) -> None:
        """Raise ``ValueError`` when a real type map holds types the cache does not know."""
        if self.label_kind != "type":
            return
        if isinstance(label, MetaTensor):
            label = label.as_tensor()  # a plain view: MetaTensor's dispatch would double the cost
        size = label.numel() if isinstance(label, torch.Tensor) else np.size(label)
        top = int(label.max()) if size else 0
        if top > self.num_types:
            raise ValueError(
                f"`{key}` holds type {top} but the cache has {self.num_types} types; the cache was "
                "sampled for another type list (or the label is an instance mask: set label_kind or keys)."
            )

    def fit(
        self, index: int, out_hw: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cache sample ``index`` cut or resized to ``out_hw``.

        Args:
            index: cache index (e.g. from :meth:`index_at`).
            out_hw: the real samples' ``(H, W)``.
            offset: two fractions in ``[0, 1)`` placing a random crop window.

        Returns:
            ``(image (3, H, W) uint8, inst (H, W) int32, types (H, W) uint8)``; they may be views into
            memory shared by every draw (``as_like`` makes the copies handed to users).
        """
        return fit_tile(self.records.read(int(index), _ARRAYS), out_hw, crop=self.crop, offset=offset)

    def label(self, inst: np.ndarray, types: np.ndarray) -> np.ndarray:
        """The label map of a fitted sample in the real data's ``label_kind``."""
        return types if self.label_kind == "type" else (inst > 0).astype(np.uint8)

    def meta(self, index: int) -> dict[str, Any]:
        """The metadata recorded with cache sample ``index``."""
        return dict(self.records.read(int(index), ("meta",))["meta"])
