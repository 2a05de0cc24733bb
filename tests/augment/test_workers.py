"""Random streams in real DataLoader workers: different per worker, reproducible with a seed."""

from __future__ import annotations

import monai.data
import numpy as np
import pytest
import torch

from synthaug.augment import SyntheticAugment
from synthaug.data import NucleiDataset
from tests.augment.conftest import real_sample

LOADERS = {"monai": monai.data.DataLoader, "torch": torch.utils.data.DataLoader}


def _worker_streams(cache, loader: str, seed: int) -> list[list[tuple[bool, float]]]:
    """(is_synthetic, image sum) per item, split by the worker that produced it."""
    dataset = NucleiDataset([real_sample()] * 16, transform=SyntheticAugment(cache, prob=0.5))
    generator = torch.Generator().manual_seed(seed)
    batches = LOADERS[loader](dataset, batch_size=2, num_workers=2, generator=generator)
    streams: list[list[tuple[bool, float]]] = [[], []]
    for b, batch in enumerate(batches):  # in-order loading: worker b % 2 made batch b
        for flag, image in zip(batch["is_synthetic"], batch["image"]):
            streams[b % 2].append((bool(flag), round(float(image.sum()), 3)))
    return streams


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_streams_differ_between_workers_and_repeat_with_the_seed(make_cache, loader):
    cache = make_cache()
    first = _worker_streams(cache, loader, seed=7)
    assert first[0] != first[1]  # the same items in both workers, different draws
    assert first == _worker_streams(cache, loader, seed=7)
    assert first != _worker_streams(cache, loader, seed=8)
    flags = [flag for stream in first for flag, _ in stream]
    assert 0 < sum(flags) < len(flags)  # prob=0.5 applied in workers too


def test_worker_items_are_valid_synthetic_tiles(make_cache):
    cache = make_cache()
    stream = _worker_streams(cache, "torch", seed=0)
    tile_sums = [float(cache.read(i)["image"].astype(np.float32).sum() / 255) for i in range(len(cache))]
    real_sum = round(float(real_sample().to_dict()["image"].sum()), 3)
    for worker in stream:
        for flag, total in worker:
            if flag:
                assert min(abs(total - t) for t in tile_sums) < 1e-2
            else:
                assert total == pytest.approx(real_sum, abs=1e-2)
