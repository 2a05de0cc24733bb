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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm


class ReadAhead:
    """Reads cache samples on a background thread, ``depth`` draws ahead of their use.

    Args:
        cache: a ``SyntheticCache`` (anything with ``read(index)``).
        depth: number of reads kept in flight; 0 reads synchronously.
    """

    def __init__(self, cache: Any, depth: int = 2) -> None:
        self.cache = cache
        self.depth = depth
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
        self._pending.append((index, self._pool.submit(self.cache.read, index)))

    def pop(self) -> tuple[int, Future | None]:
        """Take the oldest queued read; pass it to :meth:`result` to get the record."""
        self._check_process()
        return self._pending.popleft()

    def result(self, entry: tuple[int, Future | None]) -> dict[str, Any]:
        """The record of a popped read, waiting for it when still running."""
        index, future = entry
        return self.cache.read(index) if future is None else future.result()

    def clear(self) -> None:
        """Forget every queued read (after re-seeding, the queued draws are stale)."""
        self._check_process()
        for _, future in self._pending:
            if future is not None:
                future.cancel()
        self._pending.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {"cache": self.cache, "depth": self.depth}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cache"], state["depth"])


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

    Reading a zarr sample costs milliseconds of CPU (decompression plus zarr's per-array overhead);
    for a cache that fits in RAM this removes that cost from every draw. Loaded in the main process
    before the DataLoader forks, the arrays are shared copy-on-write by the workers.

    Args:
        cache: a ``SyntheticCache``; its committed samples are read now, with a progress bar.
    """

    def __init__(self, cache: Any) -> None:
        n = len(cache)
        first = cache.read(0)
        self.image = np.empty((n, *first["image"].shape), first["image"].dtype)
        self.inst = np.empty((n, *first["inst"].shape), first["inst"].dtype)
        self.type = np.empty((n, *first["type"].shape), first["type"].dtype)
        self.meta: list[dict[str, Any]] = []
        for i in tqdm(range(n), desc="preloading synthetic cache", disable=n < 256):
            record = first if i == 0 else cache.read(i)
            self.image[i], self.inst[i], self.type[i] = record["image"], record["inst"], record["type"]
            self.meta.append(record["meta"])

    def __len__(self) -> int:
        return len(self.image)

    def read(self, index: int) -> dict[str, Any]:
        return {
            "image": self.image[index],
            "inst": self.inst[index],
            "type": self.type[index],
            "meta": self.meta[index],
        }
