"""Toy caches and real samples for the augment tests: non-overlapping discs of known types."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from skimage.draw import disk

from synthaug.data import Sample
from synthaug.sampling.cache import SyntheticCache

BACKGROUND = np.array([235, 205, 225], np.uint8)


def disc_layout(
    rng: np.random.Generator, size: int, types: Sequence[int], *, cell: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One disc per ``cell``-pixel grid cell (so discs never touch), type cycling through ``types``.

    Returns ``(image (H, W, 3) uint8, inst (H, W) int32, type (H, W) uint8)``; each nucleus has its
    own colour so image pixels identify where they came from.
    """
    image = np.broadcast_to(BACKGROUND, (size, size, 3)).copy()
    inst = np.zeros((size, size), np.int32)
    type_map = np.zeros((size, size), np.uint8)
    label = 0
    for top in range(0, size - cell + 1, cell):
        for left in range(0, size - cell + 1, cell):
            centre = (top + cell // 2 + rng.integers(-2, 3), left + cell // 2 + rng.integers(-2, 3))
            rr, cc = disk(centre, int(rng.integers(3, 6)), shape=(size, size))
            label += 1
            inst[rr, cc] = label
            type_map[rr, cc] = types[(label - 1) % len(types)]
            image[rr, cc] = rng.integers(20, 160, 3)
    return image, inst, type_map


@pytest.fixture
def make_cache(tmp_path) -> Callable[..., SyntheticCache]:
    """Factory: a zarr cache of ``n`` disc tiles; tile ``i`` holds nuclei of types ``types_of(i)``."""
    counter = iter(range(1000))

    def make(
        n: int = 12,
        size: int = 32,
        num_types: int = 4,
        types_of: Callable[[int], Sequence[int]] = lambda i: (i % 4 + 1,),
        type_names: dict[int, str] | None = None,
    ) -> SyntheticCache:
        cache = SyntheticCache.create(str(tmp_path / f"cache{next(counter)}.zarr"), height=size, width=size,
                                      num_types=num_types, type_names=type_names)
        if n:
            rng = np.random.default_rng(0)
            tiles = [disc_layout(rng, size, types_of(i)) for i in range(n)]
            cache.append(image=np.stack([t[0] for t in tiles]), inst=np.stack([t[1] for t in tiles]),
                         type=np.stack([t[2] for t in tiles]),
                         meta=[{"tissue": "toy", "index": i} for i in range(n)])
        return SyntheticCache.open(cache.url)

    return make


def real_sample(size: int = 32, seed: int = 1, types: Sequence[int] = (1,), cell: int = 16) -> Sample:
    """A real-looking ``Sample`` of disc nuclei."""
    image, inst, type_map = disc_layout(np.random.default_rng(seed), size, types, cell=cell)
    return Sample(image=image, inst=inst, types=type_map, meta={"tissue": "colon", "source": "test"},
                  name=f"real_{seed}")
