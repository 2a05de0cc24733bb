"""``SyntheticAugment``: a MONAI dictionary transform that mixes cached synthetic pairs into training."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import MAX_SEED, convert_data_type

from synthaug._validation import check_choice, check_int, check_probability
from synthaug.augment._draws import COUNT_BY, check_cache, check_types, draw_probabilities
from synthaug.augment._fit import CROPS, as_like, check_tile_size, fit_tile
from synthaug.augment._paste import paste_instances
from synthaug.augment._reader import PreloadedRecords, ReadAhead, resolve_preload

MODES = ("replace", "paste")
LABEL_KINDS = ("type", "foreground")


def open_cache(cache: Any, name: str = "cache") -> Any:
    """A ``SyntheticCache`` from a cache object or its path/URL (opened read-only)."""
    if isinstance(cache, (str, os.PathLike)):
        from synthaug.sampling.cache import SyntheticCache

        return SyntheticCache.open(os.fspath(cache), mode="r")
    return cache


class SyntheticAugment(RandomizableTransform, MapTransform):
    """With probability ``prob``, replace a real sample by a cached synthetic pair (or paste its nuclei).

    Works on MONAI-style dictionaries of channel-first numpy arrays or torch tensors, as produced by
    ``Sample.to_dict()``: ``image (3, H, W)`` float in [0, 1] (or uint8), ``label (1, H, W)`` type
    map, optionally ``inst (1, H, W)`` instance mask. Outputs keep the input's keys, array types,
    dtypes, devices and size, and gain ``is_synthetic`` (a bool, for logging and accounting).
    Put it before intensity normalisation and before targets derived from the masks (``HVMapsd``).

    Modes:
        ``"replace"``: image, label and inst are taken from the synthetic tile; other keys (``name``,
        ``meta``) stay. ``"paste"``: synthetic nuclei of the ``target_types`` (all types when
        ``None``) are copied into the real sample where they lie at least ``margin`` pixels from
        every real nucleus: their image pixels are copied as they are (no blending), their labels
        and types written, new instance ids follow the real ones. Real nuclei are never changed.

    Size (``crop``): ``"random"``/``"center"`` cut a window of the real size from the cache tile
    (tiles smaller than the real samples raise ``ValueError``; crop the real samples first);
    ``"resize"`` resizes the whole tile (area for the image, nearest for the masks).

    Which synthetic samples: drawn with probability proportional to their nuclei of the weighted
    types (``target_types``, weights from ``type_weights``; by instance or pixel counts, see
    ``count_by``), uniformly when neither is given. The weights are computed once, at
    construction: samples committed to the cache later are not drawn.

    Randomness: every draw (apply or not, which cache sample, crop window) happens in
    :meth:`randomize`, from ``self.R`` and a cache-index stream seeded from it, so
    ``set_random_state(seed)`` makes the stream reproducible (whatever ``read_ahead``/``preload``).
    In DataLoader workers each worker needs its own stream: ``monai.data.DataLoader``'s
    ``worker_init_fn`` re-seeds every worker (seed = the worker's torch seed); under a plain
    ``torch.utils.data.DataLoader`` the transform re-seeds itself from the worker's torch seed on
    its first call in that worker. Either way the streams differ between workers and are
    reproducible with ``torch.manual_seed`` or the loader's ``generator``.

    Reading: the next ``read_ahead`` draws are read on a background thread while the current sample
    is used; the cache itself pickles as its URL, so the transform is safe to send to workers. With
    ``preload=True`` the whole cache is decoded into memory once instead (no per-draw reading cost).

    Cost (``benchmarks/bench_augment.py``): a preloaded draw of a 256x256 tile costs a few tenths
    of a millisecond of CPU, mostly writing the new float image and label; a streamed one several
    milliseconds (three zarr chunk reads). Place it first, on the arrays your dataset returns: after
    MONAI transforms have made ``MetaTensor``s, building the outputs' metadata costs more than the
    pixels of a smaller crop save.

    Args:
        cache: a ``SyntheticCache`` or the path/URL of one.
        prob: probability of applying a synthetic draw to each sample.
        keys: ``(image_key, label_key)`` or ``(image_key,)``.
        inst_key: key of the instance mask; updated when present in the data.
        target_types: nucleus type ids (1-based) to over-represent (and, in paste mode, to paste).
        type_weights: type id -> draw weight.
        count_by: ``"instances"`` or ``"pixels"``: which per-sample counts weight the draws.
        mode: ``"replace"`` or ``"paste"``.
        crop: ``"random"``, ``"center"`` or ``"resize"``.
        label_kind: what the label key holds: ``"type"`` (type map) or ``"foreground"`` (0/1).
        num_types: the real data's number of nucleus types; a cache with another number is refused.
        type_names: the real data's type id -> class name (``reader.type_names``); a cache that
            records other names is refused.
        margin: paste mode: free pixels required between pasted and real nuclei.
        read_ahead: number of cache reads kept in flight on a background thread (0: read inline).
        preload: decode the whole cache into memory now (``N x H x W x 8`` bytes), so draws cost no
            reading at all; forked DataLoader workers share the memory. ``"auto"`` (default) does so
            for caches up to 1 GiB decoded and streams larger ones from zarr (with ``read_ahead``).
        flag_key: name of the added boolean flag.
        allow_missing_keys: skip a missing label key instead of raising ``KeyError``.

    Raises:
        ValueError: an empty cache, a cache with another number of types, bad options or types.
        TypeError: ``cache`` is not a ``SyntheticCache``.

    Example:
        >>> from monai.transforms import Compose, RandFlipd
        >>> train = Compose([SyntheticAugment("cache.zarr", prob=0.5, target_types=[2]),
        ...                  RandFlipd(("image", "label"), prob=0.5)])  # doctest: +SKIP
    """

    def __init__(
        self,
        cache: Any,
        *,
        prob: float = 0.5,
        keys: Sequence[Hashable] = ("image", "label"),
        inst_key: Hashable | None = "inst",
        target_types: Iterable[int] | None = None,
        type_weights: Mapping[int, float] | None = None,
        count_by: str = "instances",
        mode: str = "replace",
        crop: str = "random",
        label_kind: str = "type",
        num_types: int | None = None,
        type_names: Mapping[int, str] | None = None,
        margin: int = 1,
        read_ahead: int = 2,
        preload: bool | str = "auto",
        flag_key: str = "is_synthetic",
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, check_probability(prob, "prob"))
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 1 <= len(self.keys) <= 2:
            raise ValueError(f"`keys` must be (image_key, label_key) or (image_key,), got {self.keys}.")
        self.cache = open_cache(cache)
        check_cache(self.cache, num_types=num_types, type_names=type_names)
        self.num_types = self.cache.num_types
        self.tile_hw = (self.cache.height, self.cache.width)
        self.inst_key = inst_key
        self.count_by = check_choice(count_by, "count_by", COUNT_BY)
        self.mode = check_choice(mode, "mode", MODES)
        self.crop = check_choice(crop, "crop", CROPS)
        self.label_kind = check_choice(label_kind, "label_kind", LABEL_KINDS)
        self.target_types = check_types(target_types, "target_types", self.num_types)
        for name, value in (("margin", margin), ("read_ahead", read_ahead)):
            check_int(value, name, minimum=0)
        self.margin = margin
        self.flag_key = flag_key
        probs = draw_probabilities(
            self.cache, target_types=self.target_types, type_weights=type_weights, count_by=count_by
        )
        # One uniform draw + searchsorted per sample instead of R.choice(p=...), which is O(N).
        self._cdf = np.cumsum(probs)
        self._cdf /= self._cdf[-1]
        # Preloaded records need no reading, so no read-ahead thread either.
        preload = resolve_preload(self.cache, preload)
        source = PreloadedRecords(self.cache) if preload else self.cache
        # `meta` is never used here: not reading it saves a zarr chunk read per draw.
        self._reader = ReadAhead(source, 0 if preload else read_ahead, fields=("image", "inst", "type"))
        self._read: tuple[int, Any] | None = None
        self._offset = (0.0, 0.0)
        self._index_R: np.random.RandomState | None = None
        self._seeded_pid: int | None = None

    # ------------------------------------------------------------------ randomness
    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> SyntheticAugment:
        """Re-seed the transform (and forget reads queued from the old stream); returns ``self``."""
        super().set_random_state(seed, state)
        self._reader.clear()
        self._read = None
        self._index_R = None
        self._seeded_pid = os.getpid()
        return self

    def _draw_index(self) -> int:
        if self._index_R is None:
            # Cache indices get their own stream (seeded from self.R at the first draw): drawing them
            # ahead for the read-ahead then does not shift the main stream, so the results of a
            # seed do not depend on `read_ahead` or `preload`.
            self._index_R = np.random.RandomState(self.R.randint(MAX_SEED))
        index = int(np.searchsorted(self._cdf, self._index_R.random_sample(), side="right"))
        return min(index, len(self._cdf) - 1)

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply, which cached sample (queued for read-ahead) and the crop window."""
        super().randomize(None)
        if not self._do_transform:
            return
        while len(self._reader) < self._reader.depth + 1:
            self._reader.submit(self._draw_index())
        self._read = self._reader.pop()
        self._offset = (float(self.R.random_sample()), float(self.R.random_sample()))

    def _seed_worker(self) -> None:
        # A plain torch DataLoader copies the same RandomState into every worker; give each worker
        # the stream of its torch seed unless a worker_init_fn (MONAI's) re-seeded it already.
        info = torch.utils.data.get_worker_info()
        if info is not None and self._seeded_pid != os.getpid():
            self.set_random_state(int(info.seed) % MAX_SEED)

    def __getstate__(self) -> dict[str, Any]:
        # A drawn-but-unused read is a Future (holding a lock): drop it, as the reader drops its queue.
        return {**self.__dict__, "_read": None}

    # ------------------------------------------------------------------ applying
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Apply one draw to a sample dictionary.

        Args:
            data: dictionary with the image (and label, optionally inst) keys, channel first.

        Returns:
            A new dictionary of the same keys, types and shapes, plus ``flag_key``.

        Raises:
            KeyError: a key is missing (and ``allow_missing_keys`` is False).
            ValueError: the image is not ``(3, H, W)``, the cache tiles cannot be fitted to it, or
                the label holds types the cache does not know.
        """
        d = dict(data)
        present = list(self.key_iterator(d))  # raises KeyError naming a missing key
        image_key = self.keys[0]
        if image_key not in present:
            d[self.flag_key] = False
            return d
        label_key = self.keys[1] if len(self.keys) == 2 and self.keys[1] in present else None
        inst_key = self.inst_key if self.inst_key is not None and self.inst_key in d else None
        image = d[image_key]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"`{image_key}` must be a channel-first RGB image (3, H, W), got shape {tuple(image.shape)}; "
                "add EnsureChannelFirstd before SyntheticAugment."
            )
        out_hw = (int(image.shape[-2]), int(image.shape[-1]))
        check_tile_size(self.tile_hw, out_hw, self.crop)
        if label_key is not None and self.label_kind == "type":
            self._check_label_types(d[label_key], label_key)

        self._seed_worker()
        self.randomize(None)
        d[self.flag_key] = bool(self._do_transform)
        if not self._do_transform:
            return d
        record = self._reader.result(self._read)
        syn_image, syn_inst, syn_types = fit_tile(record, out_hw, crop=self.crop, offset=self._offset)
        if self.mode == "paste":
            syn_image, syn_inst, label = self._paste(
                d, image_key, label_key, inst_key, syn_image, syn_inst, syn_types
            )
        else:
            label = syn_types if self.label_kind == "type" else (syn_inst > 0).astype(np.uint8)
        d[image_key] = as_like(syn_image, image, image=True)
        if label_key is not None:
            d[label_key] = as_like(label[None], d[label_key])
        if inst_key is not None:
            d[inst_key] = as_like(syn_inst[None], d[inst_key])
        return d

    def _check_label_types(self, label: Any, key: Hashable) -> None:
        if isinstance(label, MetaTensor):
            label = label.as_tensor()  # a plain view: MetaTensor's dispatch would double the cost
        size = label.numel() if isinstance(label, torch.Tensor) else label.size
        top = int(label.max()) if size else 0
        if top > self.num_types:
            raise ValueError(
                f"`{key}` holds type {top} but the cache has {self.num_types} types; the cache was "
                "sampled for another type list (or the label is an instance mask: set label_kind or keys)."
            )

    def _paste(
        self,
        d: dict[Hashable, Any],
        image_key: Hashable,
        label_key: Hashable | None,
        inst_key: Hashable | None,
        syn_image: np.ndarray,
        syn_inst: np.ndarray,
        syn_types: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = convert_data_type(d[image_key], np.ndarray)[0]
        if np.issubdtype(image.dtype, np.floating):
            syn_image = syn_image.astype(image.dtype) / 255.0
        if label_key is not None:
            label = convert_data_type(d[label_key], np.ndarray)[0][0]
        else:
            label = np.zeros(image.shape[1:], np.uint8)
        if inst_key is not None:
            inst = convert_data_type(d[inst_key], np.ndarray)[0][0]
        else:  # no instances: keep pasted nuclei off the labelled foreground
            inst = (label > 0).astype(np.int32)
        out_image, out_inst, out_label, _ = paste_instances(
            image, inst, label, syn_image, syn_inst, syn_types, type_ids=self.target_types, margin=self.margin
        )
        if self.label_kind == "foreground":  # pasted pixels are exactly those whose instance id changed
            out_label = np.where(out_inst != inst, 1, label).astype(label.dtype)
        return out_image, out_inst, out_label
