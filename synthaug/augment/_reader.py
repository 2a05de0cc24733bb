"""Worker-safe read-ahead of cache samples.

The cache object pickles as its URL and opens its store lazily in each process, so no open handle
ever crosses a process boundary. What remains process-bound is the read-ahead: a one-thread pool
reading the next drawn samples while the current one is being used. Threads do not survive
``fork`` (a DataLoader worker would inherit a pool whose thread is gone, and wait forever), and
cannot be pickled (``spawn``), so the pool and its pending reads are dropped whenever the process
changes and on pickling, and recreated on first use.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthaug.sampling.cache import SAMPLE_FIELDS


class ReadAhead:
    """Reads cache samples on a background thread, ``depth`` draws ahead of their use.

    Args:
        cache: a ``SyntheticCache`` (anything with ``read(index, fields)``).
        depth: number of reads kept in flight; 0 reads synchronously.
        fields: the record fields to read (each is one chunk read from zarr).
    """

    def __init__(self, cache: Any, depth: int = 2, fields: Collection[str] = SAMPLE_FIELDS) -> None:
        self.cache = cache
        self.depth = depth
        self.fields = tuple(fields)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[int, Future | None]] = deque()

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread and reads do not exist here
            self._reset()

    def __len__(self) -> int:
        self._check_process()
        return len(self._pending)

    def submit(self, index: int) -> None:
        """Queue ``index`` for reading (started now on the background thread when ``depth > 0``)."""
        self._check_process()
        if self.depth == 0:
            self._pending.append((index, None))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthaug-read-ahead")
        self._pending.append((index, self._pool.submit(self.cache.read, index, self.fields)))

    def pop(self) -> tuple[int, Future | None]:
        """Take the oldest queued read; pass it to :meth:`result` to get the record."""
        self._check_process()
        return self._pending.popleft()

    def result(self, entry: tuple[int, Future | None]) -> dict[str, Any]:
        """The record of a popped read, waiting for it when still running."""
        index, future = entry
        return self.cache.read(index, self.fields) if future is None else future.result()

    def clear(self) -> None:
        """Forget every queued read (after re-seeding, the queued draws are stale)."""
        self._check_process()
        for _, future in self._pending:
            if future is not None:
                future.cancel()
        self._pending.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {"cache": self.cache, "depth": self.depth, "fields": self.fields}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cache"], state["depth"], state["fields"])


# Caches up to this many decoded bytes (image 3 + inst 4 + type 1 per pixel) are preloaded by
# default: streaming a sample from zarr costs a few ms of CPU per draw, far more than the crop and
# flips of a typical loader, while 1 GiB held once (workers share it copy-on-write) costs little.
AUTO_PRELOAD_BYTES = 1 << 30


def resolve_preload(cache: Any, preload: bool | str) -> bool:
    """``preload`` as a bool: ``"auto"`` preloads caches of at most ``AUTO_PRELOAD_BYTES`` decoded."""
    if preload == "auto":
        return len(cache) * cache.height * cache.width * 8 <= AUTO_PRELOAD_BYTES
    if not isinstance(preload, bool):
        raise ValueError(f"`preload` must be True, False or 'auto', got {preload!r}.")
    return preload


class PreloadedRecords:
    """Every record of a cache decoded once into memory, read back without decoding.

    Reading a zarr sample costs milliseconds of CPU (zarr's per-chunk overhead plus decompression);
    for a cache that fits in RAM this removes that cost from every draw. Loaded in the main process
    before the DataLoader forks, the arrays are shared copy-on-write by the workers. Images are held
    channel-first, the layout training wants, so a draw needs no transposing copy; :meth:`read`
    still returns the cache's ``(H, W, 3)`` layout (as a view), so this is a drop-in for the cache.
    Records are views into the shared arrays: callers must copy before writing into them.

    Args:
        cache: a ``SyntheticCache``; its committed samples are read now, in blocks, with a progress bar.
        block: samples per bulk read.
    """

    def __init__(self, cache: Any, block: int = 64) -> None:
        n = len(cache)
        h, w = cache.height, cache.width
        self.image_chw = np.empty((n, 3, h, w), np.uint8)
        self.inst = np.empty((n, h, w), np.int32)
        self.type = np.empty((n, h, w), np.uint8)
        self.meta: list[dict[str, Any]] = []
        with tqdm(total=n, desc="preloading synthetic cache", unit="tile", disable=n < 256) as bar:
            for start in range(0, n, block):
                stop = min(start + block, n)
                part = cache.read_range(start, stop)
                self.image_chw[start:stop] = np.moveaxis(part["image"], -1, 1)
                self.inst[start:stop], self.type[start:stop] = part["inst"], part["type"]
                self.meta.extend(part["meta"])
                bar.update(stop - start)

    def __len__(self) -> int:
        return len(self.inst)

    def read(self, index: int, fields: Collection[str] = SAMPLE_FIELDS) -> dict[str, Any]:
        record = {
            "image": np.moveaxis(self.image_chw[index], 0, -1),
            "inst": self.inst[index],
            "type": self.type[index],
            "meta": self.meta[index],
        }
        return {f: record[f] for f in fields}
