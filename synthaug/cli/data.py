"""``synthaug data inspect PATH [--out DIR]``: counts per class and split, size histogram, montage."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="Inspect annotated datasets.", description=__doc__)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect",
        help="Print nuclei per class per split; write a size histogram and a montage with mask overlays.",
    )
    inspect.add_argument("path", help="dataset folder (format auto-detected)")
    inspect.add_argument("--out", metavar="DIR", help="write size_histogram.png and montage.png here")
    inspect.add_argument("--reader", help="reader name, if auto-detection is ambiguous")
    inspect.add_argument("--split", action="append", help="split(s) to read (default: all)")
    inspect.add_argument("--montage", type=int, default=16, metavar="N", help="samples in the montage (16)")
    inspect.add_argument("--seed", type=int, default=0, help="seed choosing the montage samples (0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from synthaug.data import open_dataset
    from synthaug.data.summary import count_table, format_table, plot_montage, plot_size_histogram

    if args.montage < 1:
        print("error: --montage must be at least 1.", file=sys.stderr)
        return 2
    try:
        reader = open_dataset(args.path, reader=args.reader)
        splits = args.split or reader.splits()
        samples = {split: reader.load(split) for split in splits}
    except ValueError as err:  # unknown layout, split or reader, or a malformed file: the message says which
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.path}: {reader.name} reader, splits {splits}")
    print(format_table(count_table(samples, reader.type_names)))
    if args.out is None:
        print("(pass --out DIR for the size histogram and the montage)")
        return 0
    out = Path(args.out)
    print(f"wrote {plot_size_histogram(samples, reader.type_names, out / 'size_histogram.png')}")
    pool = [s for split in splits for s in samples[split]]
    if pool:
        rng = np.random.default_rng(args.seed)
        chosen = sorted(rng.choice(len(pool), size=min(args.montage, len(pool)), replace=False))
        print(f"wrote {plot_montage([pool[i] for i in chosen], reader.type_names, out / 'montage.png')}")
    return 0
