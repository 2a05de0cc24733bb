"""``synthaug demo``: the whole idea end to end in a few minutes on a laptop CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthaug.cli._args import non_negative_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="masks -> conditions -> MSDM -> synthetic pairs -> segmentation with/without SyntheticAugment",
        description=(
            "Runs the whole synthaug path and writes report.html with figures and JSON. Without --data "
            "it uses generated nuclei layouts and toy H&E renders (no download, no GPU; under 5 minutes "
            "on 2 CPU cores)."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a real dataset folder (any synthaug reader, e.g. ../shared/data/consep)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="MSDM to sample with: a shipped name or a `synthaug train` run folder (default: consep)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a reduced run (seconds, for tests/CI): fewer tiles and steps, same path",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from synthaug.demo.run import DemoConfig, run_demo

    config = DemoConfig.preset(
        "quick" if args.quick else "default",
        out_dir=args.out,
        data=args.data,
        model=args.model,
        device=args.device,
        seed=args.seed,
    )
    result = run_demo(config)
    print(f"\nReport: {result.report_path}")
    return 0
