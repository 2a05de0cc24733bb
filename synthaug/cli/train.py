"""``synthaug train``: train MSDM on a dataset folder (argument parsing only; the loop is
``synthaug.model.train_msdm``). Runs as is on one device, or under ``accelerate launch`` on many."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train the MSDM diffusion model on image + mask pairs",
        description="Train MSDM from scratch on a dataset folder and export it (safetensors) to --out. "
        "Use `accelerate launch -m synthaug.cli.main train ...` for several GPUs.",
    )
    parser.add_argument("--data", required=True, help="dataset folder (format auto-detected, see --reader)")
    parser.add_argument(
        "--out", required=True, help="run folder: model/, scheduler/, text_cache/, checkpoints"
    )
    parser.add_argument("--reader", default=None, help="dataset reader name (default: auto-detect)")
    parser.add_argument("--split", default="train", help="split to train on (default: train)")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=8, help="per device (default: 8)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default: 1)")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: 2e-4)")
    parser.add_argument("--resolution", type=int, default=64, help="square crop size (default: 64)")
    parser.add_argument(
        "--size", choices=("tiny", "small", "base"), default="small", help="model size preset"
    )
    parser.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default="epsilon")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="0 = only at the end")
    parser.add_argument(
        "--sample-every", type=int, default=500, help="sample grid interval, 0 = only at the end"
    )
    parser.add_argument(
        "--num-types",
        type=int,
        default=None,
        help="nucleus types in the condition stack (default: the dataset's highest type id)",
    )
    parser.add_argument("--text-encoder", default=None, help="local BERT folder (default: packaged MiniLM)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--minutes", type=float, default=None, help="stop after this much wall time (checkpoint + export)"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from synthaug.conditions import ConditionLayout
    from synthaug.data import open_dataset
    from synthaug.model import TrainConfig, train_msdm

    reader = open_dataset(args.data, reader=args.reader)
    if args.split not in reader.splits():
        raise SystemExit(f"--split {args.split!r} is not in {args.data}; available: {reader.splits()}")
    samples = reader.load(args.split)
    num_types = args.num_types if args.num_types is not None else max(max(reader.type_names, default=0), 1)
    config = TrainConfig(
        output_dir=args.out,
        resolution=args.resolution,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        steps=args.steps,
        gradient_accumulation_steps=args.grad_accum,
        prediction_type=args.prediction_type,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        seed=args.seed,
        model_size=args.size,
        condition_layout=ConditionLayout(num_types=num_types),
        text_encoder=args.text_encoder,
        num_workers=args.num_workers,
        resume=args.resume,
        time_budget_minutes=args.minutes,
    )
    out = train_msdm(config, samples)
    print(f"MSDM written to {out}")
    return 0
