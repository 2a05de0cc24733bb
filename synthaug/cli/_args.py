"""Argument types and checks shared by the subcommands.

argparse calls the types while parsing, so a bad value is refused (``synthaug: error: ...``, exit
status 2) before a subcommand creates anything; no value is ever replaced by a default.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def positive_int(text: str) -> int:
    """An integer >= 1 (``--steps 0`` is an error, not "the default")."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, intervals where 0 means "only at the end")."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def share(text: str) -> float:
    """A finite number in (0, 1]."""
    value = finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have, naming what it has (before any work starts)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"--device {device!r}: this machine has no CUDA GPU; use --device cpu.")
        if parsed.index is not None and parsed.index >= count:
            has = f"cuda:0..{count - 1}"
            raise ValueError(f"--device {device!r}: this machine has {count} CUDA GPU(s) ({has}).")


def check_not_a_file(path: str | Path, flag: str = "--out") -> None:
    """``--out`` must name a folder (or a URL): refuse a path that is an existing file."""
    if "://" not in str(path) and Path(path).is_file():
        raise ValueError(f"{flag} {str(path)!r} is an existing file; name a folder (created if missing).")
