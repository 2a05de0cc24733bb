"""Writer claims: a range is claimed before it is written, so two runs never interleave in one store."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from synthaug.cli.main import main
from synthaug.sampling import ClaimConflictError
from synthaug.sampling.cache import SyntheticCache
from synthaug.sampling.claims import STALE_AFTER_S

from .test_cache import H, T, W, _batch


@pytest.fixture(params=["memory", "local"])
def url(request, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://claims-{uuid.uuid4().hex}"
    return str(tmp_path / "claims.zarr")


@pytest.fixture
def cache(url: str) -> SyntheticCache:
    cache = SyntheticCache.create(url, height=H, width=W, num_types=T)
    cache.reserve(8)
    return cache


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _foreign_claim(cache: SyntheticCache, name: str, ranges, *, host=None, pid=None, age=0.0) -> None:
    """A claim record as another writer process would leave it (created ``age`` seconds ago)."""
    now = time.time()
    record = cache._ensure_open().require_group("claims").require_group(name)
    record.attrs.update({
        "ranges": [list(r) for r in ranges],
        "host": socket.gethostname() if host is None else host,
        "pid": 1 if pid is None else pid,  # pid 1 always exists: a live writer on this host
        "created": now - age,
        "heartbeat": now - age,
    })


def test_writing_an_unclaimed_range_is_refused_and_stores_nothing(cache):
    with pytest.raises(ValueError, match=r"slots \[0, 2\) .* not claimed by this writer"):
        cache.write(0, **_batch(2, seed=0))
    claim = cache.claim([(0, 2)])
    with pytest.raises(ValueError, match="not claimed"):  # a claim covers only its own slots
        cache.write(1, **_batch(2, seed=0))
    cache.commit(*cache.write(0, **_batch(2, seed=0)))
    assert len(cache) == 2 and [c.name for c in cache.claims()] == [claim.name]
    cache.release()
    assert cache.claims() == []


def test_an_overlapping_claim_of_a_live_writer_is_refused(cache, url):
    first = cache.claim([(0, 4)])
    other = SyntheticCache.open(url, mode="a")
    with pytest.raises(ClaimConflictError, match=rf"being filled by another run: writer '{first.name}'"):
        other.claim([(2, 6)])
    assert [c.name for c in other.claims()] == [first.name]  # the loser's record is gone
    other.claim([(4, 8)])  # disjoint ranges (the ranks of one run) coexist
    assert len(other.claims()) == 2


def test_the_earlier_of_two_overlapping_claims_wins(cache):
    # A record created earlier by a live process wins; one created later loses when it checks.
    _foreign_claim(cache, "earlier", [(0, 8)], age=10.0)
    with pytest.raises(ClaimConflictError, match="'earlier'"):
        cache.claim([(6, 7)])
    cache.release_claim("earlier")
    _foreign_claim(cache, "later", [(0, 8)], age=-10.0)
    assert cache.claim([(0, 2)]).ranges == ((0, 2),)


def test_claims_left_by_dead_writers_are_taken_over(cache):
    _foreign_claim(cache, "killed-here", [(0, 4)], pid=_dead_pid())
    _foreign_claim(cache, "killed-elsewhere", [(4, 8)], host="another-host", age=STALE_AFTER_S + 1)
    assert not any(c.is_live() for c in cache.claims())
    cache.claim([(0, 8)])
    assert [c.ranges for c in cache.claims()] == [((0, 8),)]  # the stale records were removed


def test_a_writer_on_another_host_is_live_while_its_heartbeat_is_fresh(cache):
    _foreign_claim(cache, "elsewhere", [(0, 8)], host="another-host", pid=_dead_pid(), age=60.0)
    with pytest.raises(ClaimConflictError, match="host another-host"):
        cache.claim([(0, 1)])


def test_a_writer_whose_claim_was_taken_over_stops_before_committing(cache, url):
    claim = cache.claim([(0, 4)])
    start, stop = cache.write(0, **_batch(2, seed=1))
    assert SyntheticCache.open(url, mode="a").release_claim(claim.name)
    with pytest.raises(ClaimConflictError, match="was removed"):
        cache.commit(start, stop)
    assert len(SyntheticCache.open(url)) == 0


def test_append_claims_and_releases_its_own_range(cache, url):
    cache.append(**_batch(2, seed=2))
    assert len(cache) == 2 and cache.claims() == []
    _foreign_claim(cache, "busy", [(2, 8)], age=5.0)
    with pytest.raises(ClaimConflictError):
        cache.append(**_batch(1, seed=3))
    assert len(SyntheticCache.open(url)) == 2


def test_cache_claims_command_lists_and_releases(tmp_path, capsys):
    store = str(tmp_path / "c.zarr")
    cache = SyntheticCache.create(store, height=H, width=W, num_types=T)
    _foreign_claim(cache, "gone", [(0, 4)], pid=_dead_pid())
    assert main(["cache", "claims", store]) == 0
    out = capsys.readouterr().out
    assert "writer 'gone'" in out and "fills [0, 4)" in out and "stale" in out and "1 claim(s)" in out
    assert main(["cache", "claims", store, "--release", "nope"]) == 2
    assert "has no claim 'nope'" in capsys.readouterr().err
    assert main(["cache", "claims", store, "--release", "gone"]) == 0
    assert SyntheticCache.open(store).claims() == []
