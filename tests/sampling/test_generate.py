"""generate_to_cache: per-index reproducibility, resume after SIGKILL, two gloo ranks on one store."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import uuid

import numpy as np
import pytest
import torch

from synthaug.sampling import ClaimConflictError
from synthaug.sampling.cache import SyntheticCache
from synthaug.sampling.generate import generate_to_cache, model_hash, sample_seed

from .conftest import COLOUR, FAST

N = 6
# fork: the children inherit the imported stack and the model instead of re-importing for ~20 s
FORK = multiprocessing.get_context("fork")


def _generate(pipeline, masks, url, **kwargs):
    options = {"num_samples": N, "batch_size": 2, "seed": 7, "colour": COLOUR, "progress": False, **FAST}
    return generate_to_cache(pipeline, masks, url, **{**options, **kwargs})


def _images(cache: SyntheticCache) -> np.ndarray:
    return np.stack([cache.read(i)["image"] for i in range(len(cache))]).astype(int)


@pytest.fixture(scope="module")
def reference(pipeline, masks) -> SyntheticCache:
    """An uninterrupted single-process run into memory."""
    return _generate(pipeline, masks, f"memory://ref-{uuid.uuid4().hex}")


def test_each_index_has_its_own_seed_and_layout(pipeline, masks, reference):
    assert len(reference) == N
    assert reference.header["model_hash"] == model_hash(pipeline.model)
    for i in range(N):
        sample = reference.read(i)
        assert sample["meta"]["index"] == i and sample["meta"]["seed"] == [7, i]
        assert sample["meta"]["scheduler"] == "DPMSolverMultistepScheduler" and sample["meta"]["steps"] == 2
        np.testing.assert_array_equal(sample["inst"], masks[i].inst)
        np.testing.assert_array_equal(sample["type"], masks[i].types)
    # another batch size draws the same tiles: slot i depends on (seed, i) only
    rebatched = _generate(pipeline, masks, f"memory://re-{uuid.uuid4().hex}", batch_size=4)
    assert np.abs(_images(rebatched) - _images(reference)).max() <= 1
    assert len({sample_seed(7, i) for i in range(N)} | {sample_seed(8, 0)}) == N + 1


class _SlowSource:
    """Delays every mask so the parent can kill the run between two commits."""

    def __init__(self, source, delay: float):
        self.source, self.delay = source, delay

    def __getitem__(self, index: int):
        time.sleep(self.delay)
        return self.source[index]


def _child(target, *args) -> None:
    torch.set_num_threads(1)
    try:
        target(*args)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _wait_for_commits(url: str, minimum: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            n = len(SyntheticCache.open(url))
        except ValueError:  # not created yet
            n = 0
        if n >= minimum:
            return n
        time.sleep(0.05)
    raise AssertionError(f"the writer committed fewer than {minimum} samples in {timeout} s")


def test_killed_run_resumes_to_exactly_n_samples(pipeline, masks, reference, tmp_path):
    url = str(tmp_path / "killed.zarr")
    slow = _SlowSource(masks, delay=0.4)
    child = FORK.Process(target=_child, args=(_generate, pipeline, slow, url))
    child.start()
    try:
        _wait_for_commits(url, minimum=2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    partial = SyntheticCache.open(url)
    assert 2 <= len(partial) < N  # killed mid-way, after at least one committed batch
    assert [c.is_live() for c in partial.claims()] == [False]  # the dead run's claim is left behind

    resumed = _generate(pipeline, masks, url, batch_size=3)  # ... and taken over
    assert len(resumed) == N and resumed.committed_ranges() == [(0, N)] and resumed.claims() == []
    assert [resumed.read(i)["meta"]["index"] for i in range(N)] == list(range(N))  # no duplicates
    assert np.abs(_images(resumed) - _images(reference)).max() <= 1


def test_a_second_run_on_a_store_being_filled_is_refused(pipeline, masks, reference, tmp_path):
    # Two `synthaug sample` runs with the same settings on one --out: the header check cannot tell
    # them apart; the running one's claim does, and the newcomer writes nothing.
    url = str(tmp_path / "busy.zarr")
    child = FORK.Process(target=_child, args=(_generate, pipeline, _SlowSource(masks, delay=0.4), url))
    child.start()
    try:
        _wait_for_commits(url, minimum=2)
        with pytest.raises(ClaimConflictError, match=rf"being filled by another run: .*pid {child.pid}"):
            _generate(pipeline, masks, url)
    finally:
        child.join(timeout=120)
    assert child.exitcode == 0
    cache = SyntheticCache.open(url)
    assert len(cache) == N and cache.claims() == []
    assert np.abs(_images(cache) - _images(reference)).max() <= 1  # the first run's samples only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, pipeline, masks, url: str, resume: bool) -> None:
    # what torchrun / accelerate launch export for every rank
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    _generate(pipeline, masks, url, resume=resume)


def _run_ranks(world: int, *args) -> list[int | None]:
    port = _free_port()
    ranks = [FORK.Process(target=_child, args=(_rank, r, world, port, *args)) for r in range(world)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=240)
    return [p.exitcode for p in ranks]


def test_two_gloo_ranks_fill_disjoint_ranges_of_one_store(pipeline, masks, reference, tmp_path):
    url = str(tmp_path / "ranks.zarr")
    assert _run_ranks(2, pipeline, masks, url, True) == [0, 0]

    cache = SyntheticCache.open(url)
    assert len(cache) == N  # rank 0 consolidated the two records
    writers = cache._ensure_open()["writers"]
    assert {name: writers[name].attrs["ranges"] for name in writers.group_keys()} == {
        "rank-0": [[0, N // 2]], "rank-1": [[N // 2, N]],
    }
    assert np.abs(_images(cache) - _images(reference)).max() <= 1  # ranks change nothing but who draws
    # rank 0 refusing the store (no resume) stops rank 1 too, instead of leaving it at a barrier
    assert _run_ranks(2, pipeline, masks, url, False) == [1, 1]


def test_refuses_another_models_store_and_unrequested_overwrite(pipeline, masks, reference, tiny_model):
    with pytest.raises(ValueError, match="pass resume=True"):
        _generate(pipeline, masks, reference.url, resume=False)
    other = type(tiny_model).from_preset("tiny", sample_size=16)
    pipe = type(pipeline)(other, pipeline.scheduler, None)
    with pytest.raises(ValueError, match=rf"written by model '{model_hash(tiny_model)}' but model"):
        _generate(pipe, masks, reference.url)


def test_the_store_records_the_mask_sources_class_names(reference, masks):
    assert reference.type_names == dict(masks.vocabulary.names) == {
        1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"
    }


def test_inst_types_that_disagree_with_the_type_map_are_refused(pipeline, masks, tmp_path):
    layout = masks[0]
    assert layout.num_instances > 0
    first = next(iter(layout.inst_types))
    wrong = dict(layout.inst_types) | {first: layout.inst_types[first] % 4 + 1}
    url = str(tmp_path / "never.zarr")
    with pytest.raises(ValueError, match=f"instance {first} is type"):
        _generate(pipeline, [(layout.inst, layout.types, wrong, layout.meta)], url)
    assert not (tmp_path / "never.zarr").exists()


def test_an_empty_mask_source_is_refused_before_a_store_exists(pipeline, tmp_path):
    url = str(tmp_path / "never.zarr")
    with pytest.raises(ValueError, match="`mask_source` is an empty sequence"):
        _generate(pipeline, [], url)
    assert not (tmp_path / "never.zarr").exists()


def test_the_targeting_request_is_recorded_from_the_mask_source_itself(pipeline, masks, reference):
    from synthaug.sampling import TargetedMaskSource, TargetingPolicy

    assert reference.attrs["run"]["target"] is None and reference.read(0)["meta"]["target"] is None
    # "columnar" is an alias: the record names the class the source really enriched, by its name.
    targeted = TargetedMaskSource(masks, TargetingPolicy("columnar", 0.5, tolerance=0.2), seed=0)
    cache = _generate(pipeline, targeted, f"memory://targeted-{uuid.uuid4().hex}", num_samples=2)
    expected = {"type": "epithelial", "share": 0.5, "by": "instances", "edit": True}
    assert cache.attrs["run"]["target"] == expected
    assert all(cache.read(i)["meta"]["target"] == expected for i in range(2))
