"""``SyntheticAugment``: a MONAI dictionary transform that mixes cached synthetic pairs into training."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import MAX_SEED, convert_data_type

from synthaug._validation import check_choice, check_int, check_probability
from synthaug.augment._fit import as_like
from synthaug.augment._paste import paste_instances
from synthaug.augment.source import SyntheticSource

MODES = ("replace", "paste")


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
    ``set_random_state(seed)`` makes the stream reproducible (whatever ``preload``); it reads nothing.
    In DataLoader workers each worker needs its own stream: ``monai.data.DataLoader``'s
    ``worker_init_fn`` re-seeds every worker (seed = the worker's torch seed); under a plain
    ``torch.utils.data.DataLoader`` the transform re-seeds itself from the worker's torch seed on
    its first call in that worker. Either way the streams differ between workers and are
    reproducible with ``torch.manual_seed`` or the loader's ``generator``.

    The draws, the fitting to the real size and the reading are :class:`SyntheticSource`'s (also
    behind :class:`SyntheticMixDataset`); ``self.source`` is it. The cache pickles as its URL, so
    the transform is safe to send to workers. A synthetic ``MetaTensor`` output copies the real
    item's metadata but none of its ``applied_operations`` (it is not the real sample transformed).

    Cost (``benchmarks/bench_augment.py``): a preloaded draw of a 256x256 tile costs a few tenths
    of a millisecond of CPU, mostly writing the new float image and label; a streamed one several
    milliseconds (three zarr chunk reads). Place it first, on the arrays your dataset returns: after
    MONAI transforms have made ``MetaTensor``s, copying the outputs' metadata costs more than the
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
        preload: decode the whole cache into memory now (``N x H x W x 8`` bytes), so draws cost no
            reading at all; forked DataLoader workers share the memory. ``"auto"`` (default) does so
            for caches up to 1 GiB decoded and streams larger ones from zarr.
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
        preload: bool | str = "auto",
        flag_key: str = "is_synthetic",
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, check_probability(prob, "prob"))
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 1 <= len(self.keys) <= 2:
            raise ValueError(f"`keys` must be (image_key, label_key) or (image_key,), got {self.keys}.")
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
        self.inst_key = inst_key
        self.mode = check_choice(mode, "mode", MODES)
        self.margin = check_int(margin, "margin", minimum=0)
        self.flag_key = flag_key
        self._index = 0
        self._offset = (0.0, 0.0)
        self._index_R: np.random.RandomState | None = None
        self._seeded_pid: int | None = None

    @property
    def cache(self) -> Any:
        """The ``SyntheticCache`` drawn from."""
        return self.source.cache

    # ------------------------------------------------------------------ randomness
    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> SyntheticAugment:
        """Re-seed the transform (and its cache-index stream); returns ``self``."""
        super().set_random_state(seed, state)
        self._index_R = None
        self._seeded_pid = os.getpid()
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply, which cached sample and the crop window (reads nothing)."""
        super().randomize(None)
        if not self._do_transform:
            return
        if self._index_R is None:
            # Cache indices get their own stream, seeded from self.R at the first draw, so that a
            # seed's draws match those of earlier versions, which drew indices ahead of their use.
            self._index_R = np.random.RandomState(self.R.randint(MAX_SEED))
        self._index = self.source.index_at(self._index_R.random_sample())
        self._offset = (float(self.R.random_sample()), float(self.R.random_sample()))

    def _seed_worker(self) -> None:
        # A plain torch DataLoader copies the same RandomState into every worker; give each worker
        # the stream of its torch seed unless a worker_init_fn (MONAI's) re-seeded it already.
        info = torch.utils.data.get_worker_info()
        if info is not None and self._seeded_pid != os.getpid():
            self.set_random_state(int(info.seed) % MAX_SEED)

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
        self.source.check_size(out_hw)
        if label_key is not None:
            self.source.check_label(d[label_key], label_key)

        self._seed_worker()
        self.randomize(None)
        d[self.flag_key] = bool(self._do_transform)
        if not self._do_transform:
            return d
        syn_image, syn_inst, syn_types = self.source.fit(self._index, out_hw, self._offset)
        if self.mode == "paste":
            syn_image, syn_inst, label = self._paste(
                d, image_key, label_key, inst_key, syn_image, syn_inst, syn_types
            )
        else:
            label = self.source.label(syn_inst, syn_types)
        d[image_key] = as_like(syn_image, image, image=True)
        if label_key is not None:
            d[label_key] = as_like(label[None], d[label_key])
        if inst_key is not None:
            d[inst_key] = as_like(syn_inst[None], d[inst_key])
        return d

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
            image, inst, label, syn_image, syn_inst, syn_types,
            type_ids=self.source.target_types, margin=self.margin,
        )
        if self.source.label_kind == "foreground":  # pasted pixels: exactly those whose instance id changed
            out_label = np.where(out_inst != inst, 1, label).astype(label.dtype)
        return out_image, out_inst, out_label
