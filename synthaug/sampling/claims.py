"""Index-range claims: a writer records which slots of a store it will fill before it writes any.

Two runs pointed at one store must never interleave their samples. The run header already refuses a
resume with other settings; claims close the remaining gap, two writers running *at the same time*
(two ``synthaug sample`` on one ``--out``, or a resume started while the first run still works).

Protocol (no locks: fsspec stores have none):

1. The writer adds its record ``claims/<name>`` (ranges, host, pid, creation time, heartbeat).
2. It re-reads every record. A live record of another writer whose ranges overlap and that was
   created earlier (ties broken by name) wins: the newcomer removes its own record and raises
   :class:`ClaimConflictError`. Both writers see both records once both are written, and both order
   them the same way, so at most one of any overlapping pair proceeds.
3. Every commit refreshes the heartbeat and fails if the record is gone (another writer judged it
   stale and took over), so a writer that lost its claim stops at its next batch.

A record is *live* while its process runs (same host: the pid exists) or, for a writer on another
host, while its heartbeat is younger than ``STALE_AFTER_S``. Stale records (a killed run) are
removed by the next writer that overlaps them, so ``--resume`` after a kill just works.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import zarr

CLAIMS = "claims"
# A writer on another host that has not committed for this long is taken to be dead. One CPU batch
# of 8 tiles at 256 px takes about a minute here; a GPU batch seconds.
STALE_AFTER_S = 1800.0

Range = tuple[int, int]


class ClaimConflictError(ValueError):
    """Another live writer has claimed (part of) the index range this writer was about to fill."""


@dataclass(frozen=True)
class Claim:
    """One writer's record: which ``[start, stop)`` ranges it fills, and how to tell it is alive."""

    name: str
    ranges: tuple[Range, ...]
    host: str
    pid: int
    created: float
    heartbeat: float

    def overlaps(self, ranges: Iterable[Range]) -> bool:
        return any(a < d and c < b for a, b in self.ranges for c, d in ranges)

    def is_live(self) -> bool:
        if self.host == socket.gethostname():
            return _pid_exists(self.pid)
        return time.time() - self.heartbeat < STALE_AFTER_S

    def describe(self) -> str:
        spans = ", ".join(f"[{a}, {b})" for a, b in self.ranges)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        return f"writer {self.name!r} (host {self.host}, pid {self.pid}, started {started}) fills {spans}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _claims_group(group: zarr.Group) -> zarr.Group:
    return group.require_group(CLAIMS)


def read_claims(group: zarr.Group) -> list[Claim]:
    """Every claim record of a store (unreadable records are skipped: they claim nothing)."""
    if CLAIMS not in group:
        return []
    claims = []
    holder = group[CLAIMS]
    for name in sorted(holder.group_keys()):
        attrs = dict(holder[name].attrs)
        try:
            claims.append(
                Claim(
                    name=name,
                    ranges=tuple((int(a), int(b)) for a, b in attrs["ranges"]),
                    host=str(attrs["host"]),
                    pid=int(attrs["pid"]),
                    created=float(attrs["created"]),
                    heartbeat=float(attrs["heartbeat"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return claims


def _write(group: zarr.Group, claim: Claim) -> None:
    record = asdict(claim)
    name = record.pop("name")
    record["ranges"] = [list(r) for r in claim.ranges]
    _claims_group(group).require_group(name).attrs.update(record)


def remove_claim(group: zarr.Group, name: str) -> bool:
    """Delete the record ``name``; ``False`` when there was none."""
    if CLAIMS not in group or name not in group[CLAIMS]:
        return False
    del group[CLAIMS][name]
    return True


def acquire(group: zarr.Group, ranges: Iterable[Range], *, url: str) -> Claim:
    """Claim ``ranges`` for this process, or raise :class:`ClaimConflictError` naming the holder."""
    ranges = tuple((int(a), int(b)) for a, b in ranges if b > a)
    now = time.time()
    mine = Claim(
        name=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        ranges=ranges,
        host=socket.gethostname(),
        pid=os.getpid(),
        created=now,
        heartbeat=now,
    )
    _write(group, mine)
    for other in read_claims(group):
        if other.name == mine.name or not other.overlaps(ranges):
            continue
        if not other.is_live():
            remove_claim(group, other.name)  # a killed run: its slots are free again
            continue
        if (other.created, other.name) < (mine.created, mine.name):
            remove_claim(group, mine.name)
            raise ClaimConflictError(
                f"cache {url!r} is being filled by another run: {other.describe()}. Two runs must not "
                "write one store; wait for it to finish and resume, or sample into a new store. If that "
                f"run is gone, remove its claim: `synthaug cache claims {url} --release {other.name}`."
            )
    return mine


def heartbeat(group: zarr.Group, claim: Claim, *, url: str) -> Claim:
    """Refresh ``claim``'s heartbeat; raise :class:`ClaimConflictError` if the record was taken over."""
    if CLAIMS not in group or claim.name not in group[CLAIMS]:
        raise ClaimConflictError(
            f"cache {url!r}: this writer's claim {claim.name!r} was removed (another run judged it stale "
            "and took over its range); stopping so the two runs do not interleave. Resume once it is done."
        )
    fresh = replace(claim, heartbeat=time.time())
    group[CLAIMS][claim.name].attrs["heartbeat"] = fresh.heartbeat
    return fresh


__all__ = [
    "CLAIMS",
    "STALE_AFTER_S",
    "Claim",
    "ClaimConflictError",
    "acquire",
    "heartbeat",
    "read_claims",
    "remove_claim",
]
