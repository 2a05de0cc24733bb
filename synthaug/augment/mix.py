"""``SyntheticMixDataset``: real and cached synthetic samples at an exact ratio per epoch."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.utils import ensure_tuple
from torch.utils.data import Dataset

from synthaug._validation import check_int
from synthaug.augment._fit import as_like
from synthaug.augment.source import SyntheticSource


def synthetic_share(ratio: float | Sequence[float]) -> float:
    """The synthetic share of ``ratio``: a share in ``[0, 1]`` or a ``(real, synthetic)`` pair."""
    if isinstance(ratio, Sequence) and not isinstance(ratio, str):
        if len(ratio) != 2 or any(isinstance(r, bool) or not np.isfinite(r) or r < 0 for r in ratio):
            raise ValueError(f"`ratio` as a pair must be (real, synthetic) counts >= 0, got {ratio!r}.")
        if sum(ratio) <= 0:
            raise ValueError(f"`ratio` {ratio!r} has no real and no synthetic part; e.g. (3, 1).")
        return float(ratio[1]) / float(sum(ratio))
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(
            f"`ratio` must be the synthetic share in [0, 1] (0.25 = one synthetic in four) or a "
            f"(real, synthetic) pair such as (3, 1), got {ratio!r}."
        )
    return float(ratio)


class SyntheticMixDataset(Dataset):
    """A torch ``Dataset`` of real and synthetic samples at an exact ratio, re-drawn each epoch.

    Each epoch holds every real sample once (or ``length`` items) plus as many synthetic samples as
    the ratio asks, in an order shuffled per epoch. The table of which real and which cached sample
    sits at each index, and each synthetic crop window, is drawn from ``(seed, epoch)`` only: items
    are the same in any worker and any run, and the synthetic count is exact (for accounting in
    benchmarks). Call :meth:`set_epoch` before each epoch (with ``persistent_workers=True`` the
    workers keep the table they were started with).

    Items are dictionaries in the real samples' format (``Sample.to_dict()``: image, label, inst,
    name, meta), with ``is_synthetic``. A synthetic item gets the real items' array types and
    dtypes, its tile fitted to their size (``crop`` as in :class:`SyntheticAugment`), ``name``
    ``"synthetic/<cache index>"`` and a ``meta`` with the real items' keys filled from the cache's
    metadata (so batches collate). ``transform`` is applied to real and synthetic items alike: give
    the real dataset no transform of its own. Draw weights, fitting and reading are
    :class:`SyntheticSource`'s (``self.source``), as in :class:`SyntheticAugment`.

    Args:
        real: a dataset of dictionaries (e.g. ``NucleiDataset(samples)``) or of ``Sample`` records.
        cache: a ``SyntheticCache`` or the path/URL of one.
        ratio: synthetic share in ``[0, 1]``, or a ``(real, synthetic)`` pair.
        epoch: the starting epoch.
        seed: seed of the per-epoch tables.
        length: items per epoch; default ``len(real)`` real items plus the synthetic ones (then the
            ratio must be below 1). With ``length``, real items are drawn without replacement,
            cycling through ``real``.
        target_types: type ids to over-represent among the synthetic draws.
        type_weights: type id -> draw weight.
        count_by: ``"instances"`` or ``"pixels"``.
        crop: ``"random"``, ``"center"`` or ``"resize"``.
        keys: ``(image_key, label_key)`` of the real items.
        inst_key: key of the instance mask in the real items (``None``: absent).
        label_kind: ``"type"`` or ``"foreground"``: what the label holds.
        num_types: the real data's number of types; a cache with another number is refused.
        type_names: the real data's type id -> class name; a cache that records other names is refused.
        transform: applied to every item (e.g. a MONAI ``Compose``).
        preload: decode the whole cache into memory now, as in :class:`SyntheticAugment`
            (``"auto"``: caches up to 1 GiB decoded).
        flag_key: name of the added boolean flag.

    Raises:
        ValueError: empty or mismatched cache or real data, bad ratio or options.
    """

    def __init__(
        self,
        real: Sequence[Any],
        cache: Any,
        ratio: float | Sequence[float] = 0.5,
        *,
        epoch: int = 0,
        seed: int = 0,
        length: int | None = None,
        target_types: Iterable[int] | None = None,
        type_weights: Mapping[int, float] | None = None,
        count_by: str = "instances",
        crop: str = "random",
        keys: Sequence[Hashable] = ("image", "label"),
        inst_key: Hashable | None = "inst",
        label_kind: str = "type",
        num_types: int | None = None,
        type_names: Mapping[int, str] | None = None,
        transform: Callable[[dict[Hashable, Any]], Any] | None = None,
        preload: bool | str = "auto",
        flag_key: str = "is_synthetic",
    ) -> None:
        if not hasattr(real, "__getitem__") or not hasattr(real, "__len__") or len(real) == 0:
            raise ValueError("`real` must be a non-empty dataset (a sequence of sample dictionaries).")
        self.real = real
        self.share = synthetic_share(ratio)
        if length is None and self.share == 1:
            raise ValueError("`ratio` 1 (synthetic only) needs `length`, the number of items per epoch.")
        if length is not None:
            check_int(length, "length", minimum=1)
        self.length = length
        self.seed = int(seed)
        self.keys, self.inst_key = ensure_tuple(keys), inst_key
        if not 1 <= len(self.keys) <= 2:
            raise ValueError(f"`keys` must be (image_key, label_key) or (image_key,), got {self.keys}.")
        self.transform = transform
        self.flag_key = flag_key
        self.source = SyntheticSource(
            cache,
            target_types=target_types,
            type_weights=type_weights,
            count_by=count_by,
            crop=crop,
            label_kind=label_kind,
            num_types=num_types,
            type_names=type_names,
            preload=preload,
        )
        self._template = self._make_template(self._real_item(0))
        self.set_epoch(epoch)

    @property
    def cache(self) -> Any:
        """The ``SyntheticCache`` drawn from."""
        return self.source.cache

    # ------------------------------------------------------------------ tables
    def set_epoch(self, epoch: int) -> None:
        """Draw the table of epoch ``epoch``: which real/cached sample at each index, and crop windows."""
        self.epoch = check_int(epoch, "epoch", minimum=0)
        rng = np.random.default_rng([self.seed, self.epoch])
        n_data = len(self.real)
        if self.length is None:
            n_real = n_data
            n_syn = int(round(n_real * self.share / (1 - self.share)))
            real_idx = np.arange(n_data)
        else:
            n_syn = int(round(self.length * self.share))
            n_real = self.length - n_syn
            laps = -(-n_real // n_data)  # ceil: whole passes over `real`, each in a fresh order
            real_idx = np.concatenate([np.arange(0), *(rng.permutation(n_data) for _ in range(laps))])
            real_idx = real_idx[:n_real].astype(np.int64)
        syn_idx = rng.choice(len(self.source), size=n_syn, p=self.source.probabilities)
        # Column 0: source (0 real, 1 synthetic); column 1: index in that source.
        table = np.concatenate(
            [
                np.stack([np.zeros(n_real, np.int64), real_idx], 1),
                np.stack([np.ones(n_syn, np.int64), syn_idx], 1),
            ]
        )
        order = rng.permutation(len(table))
        self._table = table[order]
        self._offsets = rng.random((len(table), 2))[order]
        self.num_real, self.num_synthetic = n_real, n_syn

    def __len__(self) -> int:
        return len(self._table)

    # ------------------------------------------------------------------ items
    def _real_item(self, index: int) -> dict[Hashable, Any]:
        item = self.real[int(index)]
        item = item.to_dict() if hasattr(item, "to_dict") else item
        if not isinstance(item, Mapping):
            raise TypeError(f"`real` items must be dicts or Sample records, got {type(item).__name__}.")
        return dict(item)

    def _make_template(self, item: dict[Hashable, Any]) -> dict[Hashable, Any]:
        array_keys = [k for k in (*self.keys, self.inst_key) if k is not None]
        missing = [k for k in array_keys if k not in item]
        if missing:
            raise ValueError(f"`real` items lack the keys {missing}; set `keys` / `inst_key` to their keys.")
        unknown = [k for k in item if k not in (*array_keys, "name", "meta", self.flag_key)]
        if unknown:
            raise ValueError(
                f"`real` items hold {unknown}, which a synthetic item cannot provide; derive them in "
                "`transform` instead (it runs on real and synthetic items alike)."
            )
        image = item[self.keys[0]]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"real `{self.keys[0]}` must be channel-first (3, H, W), got {tuple(image.shape)}."
            )
        self.out_hw = (int(image.shape[-2]), int(image.shape[-1]))
        self.source.check_size(self.out_hw)
        if len(self.keys) == 2:
            self.source.check_label(item[self.keys[1]], self.keys[1])
        return {k: (v[..., :1, :1] if k in array_keys else v) for k, v in item.items()}

    def _synthetic_item(self, position: int) -> dict[Hashable, Any]:
        index = int(self._table[position, 1])
        offset = tuple(self._offsets[position])
        image, inst, types = self.source.fit(index, self.out_hw, offset)
        t = self._template
        item: dict[Hashable, Any] = {self.keys[0]: as_like(image, t[self.keys[0]], image=True)}
        if len(self.keys) == 2:
            item[self.keys[1]] = as_like(self.source.label(inst, types)[None], t[self.keys[1]])
        if self.inst_key is not None:
            item[self.inst_key] = as_like(inst[None], t[self.inst_key])
        if "name" in t:
            item["name"] = f"synthetic/{index}"
        if "meta" in t:  # read only when the real items carry it: one more zarr chunk per draw
            meta = self.source.meta(index)
            item["meta"] = {k: str(meta.get(k, "")) for k in t["meta"]}
        return item

    def _finish(self, item: dict[Hashable, Any], synthetic: bool) -> Any:
        item = self.transform(item) if self.transform is not None else item
        if isinstance(item, dict):
            item[self.flag_key] = synthetic
        return item

    def __getitem__(self, index: int) -> Any:
        source, i = self._table[index]
        if source == 0:
            return self._finish(self._real_item(i), False)
        return self._finish(self._synthetic_item(index), True)
