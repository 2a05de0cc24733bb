"""Run the metric tests on one torch thread.

On the shared 2-core CI machine, OpenMP threads contending with other processes made each
EfficientNet forward pass about ten times slower than a single thread; the previous thread count is
restored after this folder's tests.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
