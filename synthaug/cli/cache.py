"""``synthaug cache verify STORE``: read every committed sample of a store and report the bad ones.
``synthaug cache claims STORE [--release NAME]``: list the writers filling a store, or clear the claim
of one that is gone."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="inspect a synthetic-pair store (verify: checksums of every committed sample; claims: "
        "the writers filling it)",
        description="verify reads every committed sample, checks its CRC32C chunks and per-sample "
        "digests, and lists the bad indices; exit status 1 when any sample is bad. claims lists the "
        "index ranges that running (or killed) writers have claimed.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check every committed sample of STORE")
    verify.add_argument("store", help="store path or fsspec URL")
    claims = actions.add_parser("claims", help="list the writer claims of STORE, or release one")
    claims.add_argument("store", help="store path or fsspec URL")
    claims.add_argument(
        "--release",
        metavar="NAME",
        default=None,
        help="remove the claim NAME (only for a writer that is gone, e.g. killed on another machine)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from synthaug.sampling.cache import SyntheticCache

    if args.action == "claims":
        return run_claims(args)
    report = SyntheticCache.open(args.store).verify(progress=True)
    bad, arrays = report["bad"], report["arrays"]
    for index, reason in sorted(bad.items()):
        print(f"sample {index}: {reason}")
    for name, reason in arrays.items():
        print(f"array {name}: {reason}")
    status = "OK" if not bad and not arrays else f"{len(bad)} bad sample(s), {len(arrays)} bad array(s)"
    print(f"{args.store}: {report['checked']} committed samples checked; {status}")
    return 0 if not bad and not arrays else 1


def run_claims(args: argparse.Namespace) -> int:
    from synthaug.sampling.cache import SyntheticCache

    cache = SyntheticCache.open(args.store, mode="r" if args.release is None else "a")
    if args.release is not None:
        if not cache.release_claim(args.release):
            names = [c.name for c in cache.claims()] or "none"
            raise ValueError(f"--release: {args.store} has no claim {args.release!r}; its claims: {names}.")
        print(f"released claim {args.release!r} of {args.store}")
        return 0
    found = cache.claims()
    for claim in found:
        print(f"{claim.describe()}; {'running' if claim.is_live() else 'stale (its writer is gone)'}")
    print(f"{args.store}: {len(found)} claim(s)")
    return 0
