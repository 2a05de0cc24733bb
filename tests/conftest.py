"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(
    os.environ.get("SYNTHAUG_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)


def _data_dir(name: str) -> Path:
    path = (SHARED_DATA / name).resolve()
    if not path.is_dir():
        pytest.skip(
            f"real data {name!r} not found at {path}; it lives outside the project in ../shared/data "
            "(set SYNTHAUG_SHARED_DATA to point elsewhere)"
        )
    return path


@pytest.fixture(scope="session")
def consep_root() -> Path:
    """CoNSeP as 656 patches of 256x256 (skips when ../shared/data/consep is absent)."""
    return _data_dir("consep")


@pytest.fixture(scope="session")
def pcam_root() -> Path:
    """The 3,000-patch PCam subset (skips when ../shared/data/pcam_ai4all_subset is absent)."""
    return _data_dir("pcam_ai4all_subset")


@pytest.fixture
def one_torch_thread():
    """Tiny networks on a shared 2-core machine run faster on one thread; restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
