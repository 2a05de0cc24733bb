"""A cache decoded once into memory: the path that makes a synthetic draw cost no reading."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthaug.sampling.cache import SAMPLE_FIELDS

# Caches up to this many decoded bytes (image 3 + inst 4 + type 1 per pixel) are preloaded by
# default: streaming a sample from zarr costs several ms of CPU per draw, more than the crop and
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
