"""A tiny untrained MSDM and its pipeline, shared by the sampling tests (16 px, ~1 M parameters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.model import MSDM, make_noise_scheduler
from synthaug.sampling.mask_sources import LayoutMaskSource
from synthaug.sampling.pipeline import MSDMPipeline, make_scheduler

SIZE = 16
# Steps and guidance kept minimal: the tests check plumbing and reproducibility, not image quality.
FAST = {"num_inference_steps": 2, "guidance": {"colour": 2.0}}
COLOUR = np.array([0.35, 0.2, 0.5, 0.9, 0.75, 0.85], np.float32)


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    # Tiny convolutions on a shared 2-core machine run ~10x faster on one thread than on two
    # competing ones; restored afterwards so other packages' tests see the usual setting.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model() -> MSDM:
    torch.manual_seed(0)
    return MSDM.from_preset("tiny", sample_size=SIZE).eval()


@pytest.fixture(scope="session")
def pipeline(tiny_model: MSDM) -> MSDMPipeline:
    # text_cache=None: prompts are dropped, so no test loads BERT.
    pipe = MSDMPipeline(tiny_model, make_scheduler("dpm", make_noise_scheduler().config), None)
    # fp32 whatever the CPU: the tests compare bytes across batch sizes, ranks and resumes, which
    # bf16 autocast (the default where the CPU has native bf16) shifts by a level or two.
    pipe.mixed_precision = "no"
    return pipe


@pytest.fixture(scope="session")
def masks() -> LayoutMaskSource:
    # size=0.5: 20x-sized nuclei, so a 16-px tile holds a few of them
    return LayoutMaskSource(SIZE, SIZE, seed=0, size=0.5, meta={"tissue": "colon"})
