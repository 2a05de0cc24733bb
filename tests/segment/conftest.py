"""Toy tiles with touching nuclei, and a tiny random-init segmenter, for the segment tests."""

from __future__ import annotations

import pytest
import torch

from synthaug.data import generate_layout, render_toy_tile
from synthaug.data.record import Sample
from synthaug.segment import NucleiSegmenter, SegmenterConfig

NAMES = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}


def toy_sample(seed: int, size: int = 96, gap: int = 0) -> Sample:
    layout = generate_layout(size, size, density=0.3, gap=gap, seed=seed)
    image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=seed)
    name, group = f"toy{seed}", f"g{seed % 3}"
    return Sample(image, layout.inst, layout.types, layout.inst_types, name=name, group=group)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return [toy_sample(s) for s in range(6)]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs on one torch thread (the shared ``one_torch_thread`` fixture)."""


@pytest.fixture(scope="module")
def tiny_model() -> NucleiSegmenter:
    torch.manual_seed(0)
    config = SegmenterConfig(NAMES, encoder="resnet18", decoder_channels=(16, 16, 16, 8, 8), pretrained=False)
    return NucleiSegmenter(config).eval()
