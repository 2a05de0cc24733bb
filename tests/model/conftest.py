"""Toy H&E-like samples and a tiny MSDM for the model tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import disk

from synthaug.data import Sample

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spin-waiting
# made these tests 20-30x slower (measured: 0.6 s -> 20 s per forward-heavy test).
torch.set_num_threads(1)


def toy_sample(
    seed: int, size: int = 40, n_nuclei: int = 6, *, n_types: int = 4, with_mask: bool = True
) -> Sample:
    """Pink background, dark purple round nuclei of types 1..4: nuclei must be visible in the image."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float32)
    image[:] = (228, 170, 205)
    inst = np.zeros((size, size), np.int32)
    types = np.zeros((size, size), np.uint8)
    inst_types = {}
    for k in range(1, n_nuclei + 1):
        r = int(rng.integers(3, 6))
        cy, cx = rng.integers(r, size - r, 2)
        rr, cc = disk((cy, cx), r, shape=inst.shape)
        free = inst[rr, cc] == 0
        rr, cc = rr[free], cc[free]
        if rr.size == 0:
            continue
        t = int(rng.integers(1, n_types + 1))
        inst[rr, cc], types[rr, cc], inst_types[k] = k, t, t
        image[rr, cc] = (85, 45, 135)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    if not with_mask:
        inst[:] = 0
        types[:] = 0
        inst_types = {}
    meta = {"tissue": "colon", "assay": "H&E", "source": "toy", "label": "tumour" if seed % 2 else "normal"}
    return Sample(image=image, inst=inst, types=types, inst_types=inst_types, meta=meta, name=f"toy_{seed}")


@pytest.fixture(scope="session")
def toy_samples() -> list[Sample]:
    return [toy_sample(seed) for seed in range(6)]


@pytest.fixture
def tiny_model():
    from synthaug.model import MSDM

    torch.manual_seed(0)
    return MSDM.from_preset("tiny", sample_size=32).eval()


@pytest.fixture(scope="session")
def text_cache():
    from synthaug.model import TextEmbeddingCache

    return TextEmbeddingCache(max_length=16, device="cpu")
