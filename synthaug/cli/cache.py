"""``synthaug cache verify STORE``: read every committed sample of a store and report the bad ones."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="inspect a synthetic-pair store (verify: checksums of every committed sample)",
        description="verify reads every committed sample, checks its CRC32C chunks and per-sample "
        "digests, and lists the bad indices; exit status 1 when any sample is bad.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check every committed sample of STORE")
    verify.add_argument("store", help="store path or fsspec URL")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from synthaug.sampling.cache import SyntheticCache

    report = SyntheticCache.open(args.store).verify(progress=True)
    bad, arrays = report["bad"], report["arrays"]
    for index, reason in sorted(bad.items()):
        print(f"sample {index}: {reason}")
    for name, reason in arrays.items():
        print(f"array {name}: {reason}")
    status = "OK" if not bad and not arrays else f"{len(bad)} bad sample(s), {len(arrays)} bad array(s)"
    print(f"{args.store}: {report['checked']} committed samples checked; {status}")
    return 0 if not bad and not arrays else 1
