"""``SyntheticCache``: sampled image + mask pairs in a zarr v3 store, committed batch by batch.

Layout of a store (one sample per chunk in every array, so writers of disjoint index ranges never
touch the same object and need no locks)::

    zarr.json               group attributes: "synthaug_cache" (header) and "synthaug_commit"
    image/                  (N, H, W, 3) uint8
    inst/                   (N, H, W) int32
    type/                   (N, H, W) uint8
    type_pixels/            (N, T+1) int64   pixels per type (column 0 = background)
    type_instances/         (N, T+1) int64   instances per type (majority type of each instance)
    meta/                   (N,) string      one JSON document per sample
    digest/                 (N, 4) uint64    per-sample checksum of image, inst, type, meta (below)
    writers/<name>/         per-writer commit records (one group per rank), merged by ``consolidate``
    claims/<name>/          the index ranges each running writer fills (``synthaug.sampling.claims``)

A sample becomes visible only once its index lies in the commit record, which is written after all
of its chunks: a run killed mid-batch leaves chunks nobody can see, and the resumed run overwrites
them with the same bytes (sample ``i`` is always drawn from seed ``(seed, i)``). ``len(cache)`` is the
committed prefix ``[0, n)``. A writer claims its index range before it writes (:meth:`SyntheticCache.claim`),
so two runs filling one store at the same time are refused instead of interleaved.

Integrity: every chunk carries a CRC32C (zarr's ``crc32c`` codec), so a flipped bit fails to decode;
and every sample carries a BLAKE2b digest of ``(index, field, bytes)`` per field, checked on every
read, so a missing chunk (which zarr would serve as its fill value) or a chunk swapped from another
index is an error too (:class:`CacheIntegrityError`), never a silently wrong sample. Opening checks
the commit record against the arrays; :meth:`SyntheticCache.verify` reads everything.

This module must not import diffusers or torch: training a segmenter from a finished cache needs
neither.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from synthaug._validation import check_choice, check_instance_mask, check_int
from synthaug._version import __version__
from synthaug.conditions import instance_type_votes
from synthaug.sampling import claims as _claims
from synthaug.sampling.claims import Claim

SCHEMA_VERSION = 2  # 2: per-chunk CRC32C and per-sample digests
HEADER_KEY = "synthaug_cache"
COMMIT_KEY = "synthaug_commit"
WRITERS = "writers"
_ARRAYS = ("image", "inst", "type", "type_pixels", "type_instances", "meta", "digest")
SAMPLE_FIELDS = ("image", "inst", "type", "meta")
# zstd inside blosc with byte shuffle: int32 instance labels compress ~10x better shuffled, and
# decompression is a small part of a chunk read (zarr's per-chunk overhead dominates; see `read`).
_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

Range = tuple[int, int]


class CacheIntegrityError(ValueError):
    """A stored sample or the store's bookkeeping is damaged (missing, altered or swapped chunks)."""


def sample_digest(index: int, field: str, value: np.ndarray | str) -> int:
    """64-bit BLAKE2b of ``(index, field, bytes)``: a chunk moved to another index no longer matches."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(f"{int(index)}:{field}:".encode())
    h.update(value.encode() if isinstance(value, str) else np.ascontiguousarray(value).tobytes())
    return int.from_bytes(h.digest(), "little")


def merge_ranges(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Union of half-open ``[start, stop)`` ranges as a sorted list of disjoint, non-touching ranges."""
    merged: list[list[int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges if int(b) > int(a)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return [(a, b) for a, b in merged]


def _check_type_names(type_names: Mapping[int, str] | None, num_types: int) -> dict[int, str] | None:
    if type_names is None:
        return None
    if not isinstance(type_names, Mapping):
        raise TypeError(f"`type_names` must be a mapping type id -> name, got {type(type_names).__name__}.")
    names = {}
    for key, value in type_names.items():
        check_int(key, "type_names id", minimum=1, maximum=num_types, hint="ids run 1..num_types")
        if not isinstance(value, str) or not value:
            raise ValueError(f"`type_names[{key}]` must be a non-empty name, got {value!r}.")
        names[int(key)] = value
    return dict(sorted(names.items()))


def type_counts(inst: np.ndarray, type_map: np.ndarray, num_types: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and instances per type of one sample.

    Args:
        inst: ``(H, W)`` integer instance mask.
        type_map: ``(H, W)`` type map with values in ``0..num_types``.
        num_types: number of nucleus types ``T``.

    Returns:
        ``(pixels, instances)``, each ``(T+1,)`` int64. ``instances[k]`` counts instances whose
        majority type is ``k`` by :func:`~synthaug.conditions.instance_type_votes` (background
        pixels do not vote; ``k = 0``: instances without a typed pixel).
    """
    pixels = np.bincount(type_map.ravel(), minlength=num_types + 1).astype(np.int64)
    _, majority = instance_type_votes(inst, type_map)
    instances = np.bincount(majority, minlength=num_types + 1).astype(np.int64)
    return pixels, instances


def _describe(selection: int | slice) -> str:
    return str(selection) if isinstance(selection, int) else f"[{selection.start}, {selection.stop})"


class SyntheticCache:
    """Append-only store of synthetic pairs on local disk or any fsspec URL.

    Create with :meth:`create`, open with :meth:`open`. The object pickles as its URL and options
    only and opens the store lazily, so it can be handed to DataLoader workers.

    Args:
        url: a local path or fsspec URL (``"memory://cache"``, ``"s3://bucket/cache.zarr"``).
        mode: ``"r"`` (read only) or ``"a"`` (read and append).
        model_hash: when given, the store must have been written by this model checkpoint.
        storage_options: passed to fsspec for URLs.

    Example:
        >>> cache = SyntheticCache.create("memory://doc", height=8, width=8, num_types=2)
        >>> _ = cache.append(image=np.zeros((1, 8, 8, 3), np.uint8), inst=np.zeros((1, 8, 8), np.int32),
        ...                  type=np.zeros((1, 8, 8), np.uint8), meta=[{"seed": 0}])
        >>> len(cache), cache.read(0)["meta"]
        (1, {'seed': 0})
    """

    def __init__(
        self,
        url: str,
        mode: str = "r",
        *,
        model_hash: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise TypeError(f"`url` must be a non-empty path or fsspec URL string, got {url!r}.")
        self.url = url
        self.mode = check_choice(mode, "mode", ("r", "a"))
        self.model_hash = model_hash
        self.storage_options = dict(storage_options or {})
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._header: dict[str, Any] = {}
        self._ranges: list[Range] = []
        self._memo: dict[tuple[str, int], np.ndarray] = {}
        self._claim: Claim | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        url: str,
        *,
        height: int,
        width: int,
        num_types: int,
        type_names: Mapping[int, str] | None = None,
        attrs: Mapping[str, Any] | None = None,
        model_hash: str | None = None,
        exist_ok: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> SyntheticCache:
        """Create an empty cache (or, with ``exist_ok``, open a compatible existing one for appending).

        Args:
            url: local path or fsspec URL of the store.
            height: tile height in pixels.
            width: tile width in pixels.
            num_types: number of nucleus types ``T`` (type maps hold ``0..T``).
            type_names: type id -> class name of the masks (``mask_source.vocabulary.names``); ids
                within ``1..T``. Recorded so a consumer can refuse a cache whose types mean other
                classes than its real data's (``None``: unknown, nothing to check).
            attrs: JSON-serialisable attributes stored in the header (model config, prompts...).
            model_hash: hash of the model checkpoint that fills the cache; checked on every open.
            exist_ok: open an existing cache with the same shape, types and model instead of failing.
            storage_options: passed to fsspec for URLs.

        Returns:
            The cache opened in mode ``"a"``.

        Raises:
            ValueError: a bad size, a store that already exists (without ``exist_ok``), or an
                existing store that is foreign or incompatible.
            TypeError: ``attrs`` that are not JSON-serialisable.
        """
        for name, value in (("height", height), ("width", width), ("num_types", num_types)):
            check_int(value, name, minimum=1)
        names = _check_type_names(type_names, int(num_types))
        try:
            attrs = json.loads(json.dumps(dict(attrs or {})))
        except TypeError as err:
            raise TypeError(f"`attrs` must be JSON-serialisable (no arrays or objects): {err}") from None
        cache = cls(url, "a", model_hash=model_hash, storage_options=storage_options)
        group = cache._open_group("a")
        if HEADER_KEY in group.attrs or len(list(group.keys())):
            if not exist_ok:
                raise ValueError(
                    f"`url` {url!r} already holds a store; open it with SyntheticCache.open(url, mode='a') "
                    "or pass exist_ok=True to append to it."
                )
            cache._load(group)
            wanted = {"height": int(height), "width": int(width), "num_types": int(num_types)}
            for key, value in wanted.items():
                if cache._header[key] != value:
                    raise ValueError(
                        f"existing cache {url!r} has {key}={cache._header[key]} but {key}={value} was "
                        "requested; write to a new store or use matching settings."
                    )
            known = cache.type_names
            if names is not None and known is not None and names != known:
                raise ValueError(
                    f"existing cache {url!r} records types {known} but {names} were requested; "
                    "write to a new store or use the same dataset's masks."
                )
            return cache
        h, w, t = int(height), int(width), int(num_types)
        specs = {
            "image": ((0, h, w, 3), "uint8"),
            "inst": ((0, h, w), "int32"),
            "type": ((0, h, w), "uint8"),
            "type_pixels": ((0, t + 1), "int64"),
            "type_instances": ((0, t + 1), "int64"),
            "meta": ((0,), str),
            "digest": ((0, len(SAMPLE_FIELDS)), "uint64"),
        }
        for name, (shape, dtype) in specs.items():
            compressors = [ZstdCodec() if dtype is str else _COMPRESSOR, Crc32cCodec()]
            group.create_array(
                name, shape=shape, chunks=(1, *shape[1:]), dtype=dtype, compressors=compressors
            )
        group.create_group(WRITERS)
        header = {
            "schema_version": SCHEMA_VERSION,
            "height": h,
            "width": w,
            "num_types": t,
            "type_names": None if names is None else {str(k): v for k, v in names.items()},
            "model_hash": model_hash,
            "synthaug_version": __version__,
            "attrs": attrs,
        }
        # The header goes in last: a store without it is refused, so a create killed half-way is
        # never mistaken for a valid (empty) cache.
        group.attrs.update({COMMIT_KEY: {"num_samples": 0, "ranges": []}, HEADER_KEY: header})
        cache._load(group)
        return cache

    @classmethod
    def open(
        cls,
        url: str,
        mode: str = "r",
        *,
        model_hash: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> SyntheticCache:
        """Open an existing cache, checking its schema version (and model hash when given).

        Args:
            url: local path or fsspec URL of the store.
            mode: ``"r"`` to read, ``"a"`` to append.
            model_hash: refuse the store unless it was written by this checkpoint.
            storage_options: passed to fsspec for URLs.

        Returns:
            The opened cache.

        Raises:
            ValueError: missing, foreign, corrupted or incompatible stores (the message names the
                stored and the expected values).
        """
        cache = cls(url, mode, model_hash=model_hash, storage_options=storage_options)
        cache._ensure_open()
        return cache

    def _open_group(self, mode: str) -> zarr.Group:
        options = {"storage_options": self.storage_options} if "://" in self.url else {}
        try:
            return zarr.open_group(self.url, mode=mode, zarr_format=3, **options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise ValueError(
                f"no synthaug cache at {self.url!r}; create one with SyntheticCache.create(...)."
            ) from None
        except (ValueError, TypeError, KeyError, zarr.errors.BaseZarrError) as err:
            raise ValueError(
                f"{self.url!r} could not be opened as a zarr v3 group ({type(err).__name__}: {err}); "
                "the store is corrupted or not a synthaug cache."
            ) from None

    def _ensure_open(self) -> zarr.Group:
        if self._group is None:
            self._load(self._open_group(self.mode))
        return self._group

    def _load(self, group: zarr.Group) -> None:
        header = group.attrs.get(HEADER_KEY)
        if not isinstance(header, dict):
            raise ValueError(
                f"{self.url!r} is a zarr store but not a synthaug cache (no {HEADER_KEY!r} header); "
                "point `url` at a store written by SyntheticCache.create."
            )
        stored = header.get("schema_version")
        if stored != SCHEMA_VERSION:
            raise ValueError(
                f"cache {self.url!r} has schema version {stored!r} but this synthaug "
                f"({__version__}) reads schema version {SCHEMA_VERSION}; re-sample into a new store."
            )
        if self.model_hash is not None and header.get("model_hash") != self.model_hash:
            raise ValueError(
                f"cache {self.url!r} was written by model {header.get('model_hash')!r} but model "
                f"{self.model_hash!r} was given; sample into a new store or load the matching checkpoint."
            )
        try:
            arrays = {name: group[name] for name in _ARRAYS}
        except KeyError as err:
            raise ValueError(f"cache {self.url!r} is corrupted: array {err} is missing.") from None
        record = group.attrs.get(COMMIT_KEY)
        if not isinstance(record, dict) or not isinstance(record.get("ranges"), list):
            raise CacheIntegrityError(
                f"cache {self.url!r} is corrupted: its commit record {COMMIT_KEY!r} is {record!r}; "
                "the samples cannot be trusted. Re-sample into a new store."
            )
        try:
            ranges = merge_ranges(record["ranges"])
        except (TypeError, ValueError):
            raise CacheIntegrityError(
                f"cache {self.url!r} is corrupted: commit ranges {record['ranges']!r} are not "
                "[start, stop) pairs."
            ) from None
        self._group, self._arrays, self._header, self._ranges = group, arrays, header, ranges
        self._check_bookkeeping(record)

    def _check_bookkeeping(self, record: Mapping[str, Any]) -> None:
        """Cheap checks on open: shapes match the header, commits lie within every array."""
        h, w, t = self.height, self.width, self.num_types
        expected = {
            "image": (h, w, 3),
            "inst": (h, w),
            "type": (h, w),
            "type_pixels": (t + 1,),
            "type_instances": (t + 1,),
            "meta": (),
            "digest": (len(SAMPLE_FIELDS),),
        }
        for name, tail in expected.items():
            if tuple(self._arrays[name].shape[1:]) != tail:
                raise CacheIntegrityError(
                    f"cache {self.url!r} is corrupted: array {name!r} has shape {self._arrays[name].shape}, "
                    f"expected (N, {', '.join(map(str, tail))}) from the header."
                )
        committed = self.committed_ranges()
        top = committed[-1][1] if committed else 0
        if top > self.capacity:
            short = [n for n, a in self._arrays.items() if a.shape[0] < top]
            raise CacheIntegrityError(
                f"cache {self.url!r} is corrupted: samples up to {top} are committed but arrays {short} hold "
                f"only {self.capacity} slots (an interrupted resize?). Re-sample into a new store."
            )
        if record.get("num_samples", len(self)) != len(self):
            raise CacheIntegrityError(
                f"cache {self.url!r} is corrupted: its commit record says "
                f"{record.get('num_samples')} samples but its ranges {record['ranges']} give {len(self)}."
            )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # Only the address travels: each DataLoader worker opens its own store handle.
        return {k: getattr(self, k) for k in ("url", "mode", "model_hash", "storage_options")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            state["url"],
            state["mode"],
            model_hash=state["model_hash"],
            storage_options=state["storage_options"],
        )

    def __repr__(self) -> str:
        return f"SyntheticCache({self.url!r}, mode={self.mode!r})"

    # ------------------------------------------------------------------ reading
    @property
    def header(self) -> dict[str, Any]:
        """The stored header: schema version, size, types, model hash, synthaug version, attrs."""
        self._ensure_open()
        return dict(self._header)

    @property
    def attrs(self) -> dict[str, Any]:
        """The user attributes given to :meth:`create`."""
        return dict(self.header["attrs"])

    @property
    def height(self) -> int:
        return int(self.header["height"])

    @property
    def width(self) -> int:
        return int(self.header["width"])

    @property
    def num_types(self) -> int:
        return int(self.header["num_types"])

    @property
    def type_names(self) -> dict[int, str] | None:
        """Type id -> class name of the masks, as recorded at creation (``None``: not recorded)."""
        names = self.header.get("type_names")
        return None if names is None else {int(k): v for k, v in names.items()}

    @property
    def capacity(self) -> int:
        """Number of sample slots allocated in every array (committed or not)."""
        self._ensure_open()
        # The smallest array: a resize killed half-way leaves some arrays longer than others.
        return min(int(a.shape[0]) for a in self._arrays.values())

    def __len__(self) -> int:
        self._ensure_open()
        return self._ranges[0][1] if self._ranges and self._ranges[0][0] == 0 else 0

    def refresh(self) -> SyntheticCache:
        """Re-read the commit record and array sizes (to see samples committed by another process)."""
        self._group = None
        self._ensure_open()
        return self

    def _check_index(self, index: int) -> int:
        check_int(index, "index")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"`index` {index} is out of range for a cache of {n} committed samples.")
        return int(index) % n

    def read(self, index: int, fields: Collection[str] = SAMPLE_FIELDS) -> dict[str, Any]:
        """One committed sample.

        Args:
            index: sample index in ``[-len, len)``.
            fields: which of ``"image"``, ``"inst"``, ``"type"``, ``"meta"`` to read. Each costs
                one chunk read, most of it zarr's per-chunk overhead rather than decompression
                (about 1 ms of CPU on the 2-core machine of the README's benchmarks), so a training
                loader that never looks at ``meta`` should not ask for it.

        Returns:
            ``{"image": (H, W, 3) uint8, "inst": (H, W) int32, "type": (H, W) uint8, "meta": dict}``,
            restricted to ``fields``.

        Raises:
            IndexError: ``index`` is not a committed sample.
            ValueError: an unknown field.
        """
        i = self._check_index(index)
        return self._gather(self._check_fields(fields), i)

    def read_range(self, start: int, stop: int, fields: Collection[str] = SAMPLE_FIELDS) -> dict[str, Any]:
        """Committed samples ``start..stop-1`` stacked, one zarr call per field (for bulk loading).

        Returns:
            ``image (n, H, W, 3)``, ``inst (n, H, W)``, ``type (n, H, W)`` and ``meta`` (a list of
            dicts), restricted to ``fields``.

        Raises:
            IndexError: the range is not within the committed samples.
            ValueError: an unknown field.
        """
        n = len(self)
        integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, stop))
        if not (integers and 0 <= start <= stop <= n):
            raise IndexError(
                f"range [{start}, {stop}) is not within the {n} committed samples; "
                f"use integers with 0 <= start <= stop <= {n}."
            )
        return self._gather(self._check_fields(fields), slice(int(start), int(stop)))

    @staticmethod
    def _check_fields(fields: Collection[str]) -> tuple[str, ...]:
        if isinstance(fields, str):
            fields = (fields,)
        fields = tuple(fields)
        unknown = [f for f in fields if f not in SAMPLE_FIELDS]
        if unknown or not fields:
            raise ValueError(f"`fields` must be a non-empty subset of {SAMPLE_FIELDS}, got {fields!r}.")
        return fields

    def _gather(self, fields: tuple[str, ...], selection: int | slice) -> dict[str, Any]:
        arrays = self._arrays
        fetched = (*fields, "digest")
        try:
            # Public, sequential reads: gathering them on zarr's private I/O loop saved too little
            # to carry a private import (benchmarks/bench_augment.py, preload=False row).
            values = [arrays[f][selection] for f in fetched]
        except Exception as err:  # a chunk that fails its CRC32C or does not decompress
            raise CacheIntegrityError(
                f"cache {self.url!r}: samples {_describe(selection)} could not be decoded "
                f"({type(err).__name__}: {err}); run `synthaug cache verify {self.url}` to list the bad ones."
            ) from None
        out = dict(zip(fetched, values, strict=True))
        digests = np.atleast_2d(out.pop("digest"))
        if "meta" in out:
            out["meta"] = np.atleast_1d(np.asarray(out["meta"], dtype=object))  # a scalar may be a bare str
        first = selection if isinstance(selection, int) else selection.start
        scalar = isinstance(selection, int)
        for field in fields:
            column = SAMPLE_FIELDS.index(field)
            items = [out[field]] if scalar and field != "meta" else out[field]
            for j, value in enumerate(items):
                stored = str(value) if field == "meta" else value
                if sample_digest(first + j, field, stored) != digests[j, column]:
                    raise CacheIntegrityError(
                        f"cache {self.url!r}: sample {first + j} field {field!r} does not match its checksum "
                        "(a missing, altered or swapped chunk); run `synthaug cache verify "
                        f"{self.url}` to list every bad sample."
                    )
        if "meta" in out:
            docs = [json.loads(m) for m in out["meta"]]
            out["meta"] = docs[0] if scalar else docs
        return out

    __getitem__ = read

    def verify(self, *, progress: bool = False) -> dict[str, Any]:
        """Read every committed sample and check its chunks and digests (``synthaug cache verify``).

        Returns:
            ``{"checked": n, "bad": {index: reason}, "arrays": {name: reason}}``: the samples that
            fail, and the per-sample count arrays that do not decode. Empty ``bad`` and ``arrays``
            mean every committed sample reads back exactly as written.
        """
        from tqdm.auto import tqdm

        self.refresh()
        n = len(self)
        bad: dict[int, str] = {}
        for i in tqdm(range(n), desc="verifying", unit="sample", disable=not progress):
            try:
                self._gather(SAMPLE_FIELDS, i)
            except CacheIntegrityError as err:
                bad[i] = str(err)
        arrays: dict[str, str] = {}
        for name in ("type_pixels", "type_instances"):
            try:
                np.asarray(self._arrays[name][:n])
            except Exception as err:  # CRC32C or decompression failure
                arrays[name] = f"{type(err).__name__}: {err}"
        return {"checked": n, "bad": bad, "arrays": arrays}

    def _counts(self, name: str) -> np.ndarray:
        n = len(self)
        key = (name, n)
        # Committed samples never change, so one read per (array, length) serves every caller.
        if key not in self._memo:
            self._memo[key] = np.asarray(self._arrays[name][:n], dtype=np.int64)
        return self._memo[key].copy()

    def type_pixel_counts(self) -> np.ndarray:
        """Pixels per type of every committed sample, ``(len, num_types + 1)`` int64."""
        return self._counts("type_pixels")

    def type_instance_counts(self) -> np.ndarray:
        """Instances per (majority) type of every committed sample, ``(len, num_types + 1)`` int64."""
        return self._counts("type_instances")

    def committed_ranges(self, *, include_writers: bool = True) -> list[Range]:
        """Committed ``[start, stop)`` index ranges, including unconsolidated per-writer records."""
        group = self._ensure_open()
        ranges = list(self._ranges)
        if include_writers:
            writers = group[WRITERS]
            for name in writers.group_keys():
                ranges += writers[name].attrs.get("ranges", [])
        return merge_ranges(ranges)

    # ------------------------------------------------------------------ writing
    def _writable(self) -> zarr.Group:
        group = self._ensure_open()
        if self.mode != "a":
            raise ValueError(f"cache {self.url!r} is open read-only; open it with mode='a' to write.")
        return group

    def reserve(self, num_samples: int) -> None:
        """Grow every array to at least ``num_samples`` slots.

        With several writers, call this once (on rank 0) before they start: resizing rewrites the
        array metadata, which is the one object writers would otherwise share.
        """
        self._writable()
        for array in self._arrays.values():
            if array.shape[0] < num_samples:  # also completes a resize that was killed half-way
                array.resize((int(num_samples), *array.shape[1:]))

    def write(
        self,
        start: int,
        *,
        image: np.ndarray,
        inst: np.ndarray,
        type: np.ndarray,  # noqa: A002 - the stored array's name
        meta: Sequence[Mapping[str, Any]],
    ) -> Range:
        """Write a batch into slots ``[start, start + B)`` without committing it.

        Args:
            start: first sample index of the batch.
            image: ``(B, H, W, 3)`` uint8.
            inst: ``(B, H, W)`` integer instance masks.
            type: ``(B, H, W)`` type maps with values in ``0..num_types``.
            meta: ``B`` JSON-serialisable dictionaries.

        Returns:
            The written range ``(start, start + B)``; pass it to :meth:`commit`.

        Raises:
            TypeError / ValueError: arrays of the wrong dtype, shape or values, or a range this
                writer has not claimed (:meth:`claim`).
        """
        self._writable()
        h, w, t = self.height, self.width, self.num_types
        image, inst, type_map = np.asarray(image), check_instance_mask(inst, "inst", ndim=3), np.asarray(type)
        b = inst.shape[0]
        if image.dtype != np.uint8 or image.shape != (b, h, w, 3):
            raise ValueError(
                f"`image` must be uint8 of shape {(b, h, w, 3)}, got {image.dtype} {image.shape}."
            )
        if inst.shape[1:] != (h, w) or type_map.shape != (b, h, w):
            raise ValueError(
                f"`inst` and `type` must have shape {(b, h, w)}, got {inst.shape} and {type_map.shape}."
            )
        if type_map.dtype.kind not in "iu" or (type_map.size and (type_map.min() < 0 or type_map.max() > t)):
            raise ValueError(f"`type` must be integers in [0, {t}] (num_types={t}).")
        if isinstance(meta, Mapping) or len(meta) != b:
            raise ValueError(f"`meta` must be a sequence of {b} dictionaries (one per sample).")
        check_int(start, "start", minimum=0)
        stop = int(start) + b
        self._check_claimed(int(start), stop)
        docs = np.array([json.dumps(dict(m), sort_keys=True) for m in meta], dtype=object)
        type_map = type_map.astype(np.uint8)
        counts = [type_counts(i, tm, t) for i, tm in zip(inst, type_map)]
        self.reserve(stop)
        a = self._arrays
        a["image"][start:stop] = image
        a["inst"][start:stop] = inst.astype(np.int32)
        a["type"][start:stop] = type_map
        a["type_pixels"][start:stop] = np.stack([c[0] for c in counts])
        a["type_instances"][start:stop] = np.stack([c[1] for c in counts])
        a["meta"][start:stop] = docs
        stored = {"image": image, "inst": inst.astype(np.int32), "type": type_map}
        a["digest"][start:stop] = np.array(
            [
                [sample_digest(start + j, f, docs[j] if f == "meta" else stored[f][j]) for f in SAMPLE_FIELDS]
                for j in range(b)
            ],
            dtype=np.uint64,
        )
        return int(start), stop

    def commit(self, start: int, stop: int, *, writer: str | None = None) -> None:
        """Make the fully written samples ``[start, stop)`` visible.

        Args:
            start: first index of the committed range.
            stop: one past the last index.
            writer: ``None`` updates the store's commit record directly (single writer). A name
                (``"rank-3"``) records the range in that writer's own record instead, so concurrent
                writers never rewrite a shared object; :meth:`consolidate` merges the records.
        """
        group = self._writable()
        if not 0 <= start <= stop <= self.capacity:
            raise ValueError(f"`start`/`stop` ({start}, {stop}) must satisfy 0 <= start <= stop <= capacity.")
        self._check_claimed(start, stop)
        # Fails if another run took the claim over: this writer stops before its range becomes visible.
        self._claim = _claims.heartbeat(group, self._claim, url=self.url)
        if writer is None:
            self._ranges = merge_ranges([*self._ranges, (start, stop)])
            self._write_commit(group)
            return
        record = group[WRITERS].require_group(str(writer))
        ranges = merge_ranges([*record.attrs.get("ranges", []), (start, stop)])
        record.attrs["ranges"] = [list(r) for r in ranges]

    def claim(self, ranges: Iterable[Sequence[int]]) -> Claim:
        """Claim the ``[start, stop)`` index ranges this writer will fill; required before :meth:`write`.

        Raises:
            ClaimConflictError: another live writer (a running process) claimed an overlapping range
                first; its description says which run and how to release a claim left by a dead one.
            ValueError: this object already holds a claim (call :meth:`release` first).
        """
        group = self._writable()
        if self._claim is not None:
            raise ValueError(f"this writer already holds claim {self._claim.name!r}; release() it first.")
        wanted = merge_ranges(ranges)
        if any(a < 0 for a, _ in wanted):
            raise ValueError(f"`ranges` must be non-negative [start, stop) pairs, got {wanted}.")
        self._claim = _claims.acquire(group, wanted, url=self.url)
        return self._claim

    def release(self) -> None:
        """Give up this writer's claim (its committed samples stay; a no-op without a claim)."""
        if self._claim is not None:
            _claims.remove_claim(self._writable(), self._claim.name)
            self._claim = None

    def release_claim(self, name: str) -> bool:
        """Remove another writer's claim by name (``synthaug cache claims --release``), for a writer
        known to be gone that the automatic check cannot see (killed on another host less than
        ``claims.STALE_AFTER_S`` ago). Returns ``False`` when the store has no such claim."""
        return _claims.remove_claim(self._writable(), str(name))

    def claims(self) -> list[Claim]:
        """Every writer claim recorded in the store (running writers, or dead ones not yet cleared)."""
        return _claims.read_claims(self._ensure_open())

    def _check_claimed(self, start: int, stop: int) -> None:
        held = self._claim.ranges if self._claim is not None else ()
        if stop > start and not any(a <= start and stop <= b for a, b in held):
            raise ValueError(
                f"slots [{start}, {stop}) of cache {self.url!r} are not claimed by this writer; call "
                "cache.claim([(start, stop)]) first, so no other run can write them at the same time."
            )

    def consolidate(self) -> int:
        """Merge every writer's record into the store's commit record (run once, after all writers).

        Returns:
            The number of committed samples now visible (``len(self)``).
        """
        group = self._writable()
        self._ranges = self.committed_ranges(include_writers=True)
        self._write_commit(group)
        return len(self)

    def _write_commit(self, group: zarr.Group) -> None:
        ranges = [list(r) for r in self._ranges]
        n = ranges[0][1] if ranges and ranges[0][0] == 0 else 0
        group.attrs[COMMIT_KEY] = {"num_samples": n, "ranges": ranges}

    def append_samples(self, samples: Sequence[Any]) -> Range:
        """Append annotated records (``synthaug.data.Sample``: ``image``, ``inst``, ``types``, ``meta``)
        as one committed batch, e.g. toy renders standing in for sampled pairs.

        Raises:
            ValueError: ``samples`` is empty.
        """
        if not samples:
            raise ValueError("`samples` is empty; pass at least one record.")
        return self.append(
            image=np.stack([s.image for s in samples]),
            inst=np.stack([s.inst for s in samples]),
            type=np.stack([s.types for s in samples]),
            meta=[dict(s.meta) for s in samples],
        )

    def append(
        self,
        *,
        image: np.ndarray,
        inst: np.ndarray,
        type: np.ndarray,  # noqa: A002 - the stored array's name
        meta: Sequence[Mapping[str, Any]],
    ) -> Range:
        """Write a batch after the committed samples and commit it (single writer).

        Returns:
            The committed range.
        """
        start, ranges = len(self), self.committed_ranges()
        if ranges not in ([], [(0, start)]):
            raise ValueError(
                f"cache {self.url!r} has committed ranges {ranges} beyond its first "
                f"{start} samples; append would overwrite them. Fill the gaps with write() + commit()."
            )
        needed = start + len(meta)
        if needed > self.capacity:
            # Grow geometrically: every resize rewrites the metadata of all six arrays.
            self.reserve(max(needed, 2 * self.capacity))
        held = self._claim is not None
        if not held:
            self.claim([(start, needed)])
        try:
            start, stop = self.write(start, image=image, inst=inst, type=type, meta=meta)
            self.commit(start, stop)
        finally:
            if not held:
                self.release()
        return start, stop
