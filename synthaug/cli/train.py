"""``synthaug train``: train MSDM on a dataset folder (argument parsing only; the loop is
``synthaug.model.train_msdm``). Runs as is on one device, or under ``accelerate launch`` on many."""

from __future__ import annotations

import argparse

from synthaug.cli._args import check_not_a_file, finite_float, non_negative_int, positive_float, positive_int


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
    parser.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps (default: 1000)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="per device (default: 8)")
    parser.add_argument(
        "--grad-accum", type=positive_int, default=1, help="gradient accumulation steps (default: 1)"
    )
    parser.add_argument("--lr", type=positive_float, default=2e-4, help="learning rate (default: 2e-4)")
    parser.add_argument("--resolution", type=positive_int, default=64, help="square crop size (default: 64)")
    parser.add_argument(
        "--size",
        choices=("tiny", "cpu", "small", "base"),
        default="cpu",
        help="model size preset (default: cpu, the 6.6 M-parameter CPU recipe)",
    )
    parser.add_argument("--prediction-type", choices=("v_prediction", "epsilon"), default="v_prediction")
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "no", "bf16", "fp16"),
        default="auto",
        help="auto = bf16 where the device computes it natively (AMX/AVX512-BF16 CPUs, most GPUs)",
    )
    parser.add_argument("--ema-decay", type=finite_float, default=0.999, help="EMA decay (default: 0.999)")
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=500, help="0 = only at the end")
    parser.add_argument(
        "--export-every",
        type=non_negative_int,
        default=500,
        help="export EMA weights to model/ every N steps",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        help="warm-start from exported weights (a model folder or a run folder with model/)",
    )
    parser.add_argument(
        "--morphology-prompts",
        action="store_true",
        help="add image-derived morphology groups (MorphologyPrompter) to each tile's text prompt; "
        "the fitted prompter is saved in OUT/prompter/",
    )
    parser.add_argument(
        "--morphology-groups",
        type=positive_int,
        default=None,
        help="number of morphology groups (default: chosen from the data by silhouette)",
    )
    parser.add_argument(
        "--sample-every", type=non_negative_int, default=500, help="sample grid interval, 0 = only at the end"
    )
    parser.add_argument(
        "--num-types",
        type=positive_int,
        default=None,
        help="nucleus types in the condition stack (default: the dataset's highest type id)",
    )
    parser.add_argument("--text-encoder", default=None, help="local BERT folder (default: packaged MiniLM)")
    parser.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader workers")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="stop after this much wall time (checkpoint + export)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from synthaug.conditions import ConditionChannels
    from synthaug.data import open_dataset
    from synthaug.model import TrainConfig, check_new_run_folder, train_msdm

    check_not_a_file(args.out)
    if not args.resume:
        check_new_run_folder(args.out)  # before the prompter is fitted and saved there
    reader = open_dataset(args.data, reader=args.reader)
    if args.split not in reader.splits():
        raise SystemExit(f"--split {args.split!r} is not in {args.data}; available: {reader.splits()}")
    samples = reader.load(args.split)
    if args.morphology_prompts:
        samples = add_morphology_prompts(
            samples, args.out, k=args.morphology_groups, seed=args.seed, init_from=args.init_from
        )
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
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        export_every=args.export_every,
        init_from=args.init_from,
        sample_every=args.sample_every,
        seed=args.seed,
        model_size=args.size,
        condition_channels=ConditionChannels(num_types=num_types),
        text_encoder=args.text_encoder,
        num_workers=args.num_workers,
        resume=args.resume,
        time_budget_minutes=args.minutes,
    )
    out = train_msdm(config, samples)
    print(f"MSDM written to {out}")
    return 0


def add_morphology_prompts(samples, out, *, k=None, seed=0, init_from=None):
    """Fit a ``MorphologyPrompter`` on the training tiles, save it in ``out/prompter``, and return
    the samples with their group in ``meta`` (``metadata_to_text`` writes it into the prompt).

    A prompter already saved there (a resumed run), or else in the warm-start source ``init_from``
    (a run folder or a shipped model), is reused, so the groups and their prompt strings stay the
    ones the model was trained with.
    """
    import dataclasses
    from pathlib import Path

    from synthaug.model.loading import PROMPTER_SUBFOLDER, resolve_model_path
    from synthaug.prompts import MorphologyPrompter

    folder = Path(out) / PROMPTER_SUBFOLDER
    inherited = None if init_from is None else resolve_model_path(init_from) / PROMPTER_SUBFOLDER
    images = [s.image for s in samples]
    masks = [s.inst for s in samples]
    if (folder / "prompter_config.json").is_file():
        prompter = MorphologyPrompter.load(folder)
        assigned = prompter.transform(images, masks)
    elif inherited is not None and (inherited / "prompter_config.json").is_file():
        prompter = MorphologyPrompter.load(inherited)
        assigned = prompter.transform(images, masks)
        prompter.save(folder)
    else:
        prompter = MorphologyPrompter(k=k, seed=seed)
        assigned = prompter.fit_transform(images, masks)
        prompter.save(folder)
    print(f"morphology prompts: {prompter.k_} groups, e.g. {assigned[0].prompt!r}")
    return [dataclasses.replace(s, meta={**s.meta, **a.meta}) for s, a in zip(samples, assigned)]
