"""``synthaug segment train | evaluate | predict``: the HoVer-Net-style segmenter from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthaug.cli._args import (
    check_device,
    check_not_a_file,
    non_negative_int,
    positive_float,
    positive_int,
    share,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="train, evaluate or apply the HoVer-Net-style nuclei segmenter (with synthetic pairs)",
        description="A nuclei segmenter with HoVer-Net's NP/HV/TP heads on an ImageNet EfficientNet-Lite0 "
        "U-Net; instances by MONAI's HoVer-Net watershed post-processing.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train on a dataset folder (and synthetic stores)")
    train.add_argument("--data", required=True, help="dataset folder (format auto-detected, see --reader)")
    train.add_argument("--out", required=True, help="new run folder: model/, checkpoint/, loss.png")
    train.add_argument("--reader", default=None, help="dataset reader name (default: auto-detect)")
    train.add_argument("--split", default="train", help="split to train on (default: train)")
    train.add_argument(
        "--cache",
        action="append",
        default=[],
        metavar="STORE",
        help="a finished synthetic-pair store mixed in by SyntheticAugment (repeatable)",
    )
    train.add_argument(
        "--prob", type=share, default=0.5, help="probability a draw is synthetic (default 0.5)"
    )
    train.add_argument(
        "--target-type",
        default=None,
        help="draw synthetic pairs in proportion to their nuclei of this type (name or id)",
    )
    typing = train.add_mutually_exclusive_group()
    typing.add_argument(
        "--real-types-only",
        action="store_true",
        help="synthetic draws train nuclei and HV maps but not the type head (their types are mask labels)",
    )
    typing.add_argument(
        "--synthetic-types",
        default=None,
        metavar="TYPES",
        help="comma-separated types (names or ids) whose nuclei in synthetic draws train the type head; "
        "their other nuclei do not (e.g. the --target-type)",
    )
    train.add_argument(
        "--synthetic-until",
        type=share,
        default=1.0,
        help="share of the steps that may draw synthetic pairs; the rest train on real tiles (default 1)",
    )
    train.add_argument("--steps", type=positive_int, default=2000, help="optimiser steps (default 2000)")
    train.add_argument("--batch-size", type=positive_int, default=8, help="crops per step (default 8)")
    train.add_argument(
        "--crop", type=positive_int, default=128, help="crop side, divisible by 32 (default 128)"
    )
    train.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    train.add_argument("--encoder", choices=("efficientnet-lite0", "resnet18"), default="efficientnet-lite0")
    train.add_argument("--no-pretrained", action="store_true", help="random encoder init (default: ImageNet)")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--checkpoint-every", type=non_negative_int, default=250, help="0: no checkpoints")
    train.add_argument("--device", default=None, help="default: cuda when available")
    train.set_defaults(run=run_train)

    evaluate = actions.add_parser(
        "evaluate", help="score a trained segmenter on a split; prints and writes JSON"
    )
    evaluate.add_argument("--model", required=True, help="a `segment train` folder or its model/")
    evaluate.add_argument("--data", required=True, help="dataset folder")
    evaluate.add_argument("--reader", default=None)
    evaluate.add_argument("--split", default="test", help="split to score (default: test)")
    evaluate.add_argument(
        "--out", default=None, help="JSON file to write (default: MODEL/evaluation_SPLIT.json)"
    )
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument(
        "--no-tta", action="store_true", help="one forward pass per window (default: averaged over 4 flips)"
    )
    evaluate.add_argument(
        "--whole-tiles",
        action="store_true",
        help="score whole tiles stitched from their patches (HoVer-Net's per-tile protocol; CoNSeP)",
    )
    evaluate.set_defaults(run=run_evaluate)

    predict = actions.add_parser("predict", help="segment one image of any size; writes instance/type maps")
    predict.add_argument("--model", required=True, help="a `segment train` folder or its model/")
    predict.add_argument("--image", required=True, help="an RGB image file (PNG, JPEG, TIFF)")
    predict.add_argument(
        "--out", required=True, help="new folder: inst.png (uint16), types.png, overlay.png, nuclei.json"
    )
    predict.add_argument("--device", default=None)
    predict.add_argument(
        "--no-tta", action="store_true", help="one forward pass per window (default: averaged over 4 flips)"
    )
    predict.set_defaults(run=run_predict)


def _load_split(args):
    from synthaug.data import open_dataset

    reader = open_dataset(args.data, reader=args.reader)
    if args.split not in reader.splits():
        raise ValueError(f"--split {args.split!r} is not in {args.data}; available: {reader.splits()}")
    return reader, reader.load(args.split)


def _synthetic_types(args: argparse.Namespace) -> bool | list:
    """``SegmenterTrainingConfig.synthetic_types`` from ``--real-types-only`` / ``--synthetic-types``."""
    if args.synthetic_types is None:
        return not args.real_types_only
    return [n for n in args.synthetic_types.split(",") if n.strip()]  # the config resolves names and ids


def run_train(args: argparse.Namespace) -> int:
    from synthaug._validation import default_device
    from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, train_segmenter

    check_device(args.device)
    check_not_a_file(args.out)
    if args.target_type is not None and not args.cache:
        raise ValueError("--target-type weights synthetic draws; give the stores with --cache STORE.")
    if args.synthetic_until < 1 and not args.cache:
        raise ValueError("--synthetic-until schedules synthetic draws; give the stores with --cache STORE.")
    reader, samples = _load_split(args)
    names = dict(reader.type_names) if reader.has_types else {}
    config = SegmenterTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        synthetic_types=_synthetic_types(args),
        synthetic_until=args.synthetic_until,
        model=SegmenterConfig(names, encoder=args.encoder, pretrained=not args.no_pretrained),
    )
    synthetic = _synthetic(args, reader, names) if args.cache else None
    # The watershed marker threshold is chosen on an even spread of (at most 32) training tiles.
    calibrate = samples[:: max(1, -(-len(samples) // 32))][:32]
    model, history = train_segmenter(
        samples,
        config,
        output_dir=args.out,
        synthetic=synthetic,
        device=default_device(args.device),
        calibrate_on=calibrate,
    )
    print(
        f"segmenter written to {Path(args.out) / 'model'} ({len(history.losses)} steps, "
        f"{history.synthetic_fraction:.0%} synthetic draws, final loss {history.losses[-1]:.3f}, "
        f"marker threshold {model.config.marker_threshold:g} chosen on {len(calibrate)} training tiles)"
    )
    return 0


def _synthetic(args, reader, names):
    """One SyntheticAugment per store, chained (each swaps a draw with ``--prob / len(stores)``)."""
    from monai.transforms import Compose

    from synthaug.augment import SyntheticAugment

    target = None
    if args.target_type is not None:
        target = [reader.vocabulary.resolve(args.target_type, "--target-type")]
    prob = args.prob / len(args.cache)
    parts = [
        SyntheticAugment(
            store, prob=prob, target_types=target, num_types=max(names, default=1), type_names=names or None
        )
        for store in args.cache
    ]
    return parts[0] if len(parts) == 1 else Compose(parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from synthaug._validation import default_device
    from synthaug.segment import evaluate_segmenter, format_table, load_segmenter

    check_device(args.device)
    model = load_segmenter(args.model, device=default_device(args.device))
    reader, samples = _load_split(args)
    if args.whole_tiles:
        samples = reader.load_tiles(args.split)  # a reader without tiles refuses, naming the fix
    names = dict(model.config.type_names)
    if names and reader.has_types and names != dict(reader.type_names):
        raise ValueError(
            f"the model predicts types {names} but {args.data} has {reader.type_names}; "
            "evaluate on a dataset with the same vocabulary."
        )
    if not reader.has_types:
        names = {}  # the dataset says its masks carry no types: type-free metrics only
    table, _ = evaluate_segmenter(model, samples, type_names=names, tta=not args.no_tta)
    default = f"evaluation_{args.split}{'_tiles' if args.whole_tiles else ''}.json"
    out = Path(args.out) if args.out else Path(args.model) / default
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the JSON file to write.")
    record = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "num_samples": len(samples),
        "whole_tiles": args.whole_tiles,
        "test_time_flips": not args.no_tta,
        "metrics": table,
    }
    out.write_text(json.dumps(record, indent=2))
    print(format_table({f"{Path(args.model).name} on {args.split} ({len(samples)})": table}))
    print(f"wrote {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from synthaug._validation import default_device
    from synthaug.data.io import read_rgb
    from synthaug.segment import load_segmenter, predict_nuclei

    check_device(args.device)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty; choose a new folder (nothing is overwritten).")
    model = load_segmenter(args.model, device=default_device(args.device))
    image = read_rgb(Path(args.image))
    prediction = predict_nuclei(model, image, tta=not args.no_tta)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(prediction.inst.astype(np.uint16)).save(out / "inst.png")
    Image.fromarray(prediction.types.astype(np.uint8)).save(out / "types.png")
    from synthaug.viz import overlay_instances

    names = dict(model.config.type_names)
    # Outlines in the palette of every other figure; an untyped model draws them in one colour.
    overlay = overlay_instances(image, prediction.inst, prediction.types if names else None)
    Image.fromarray(overlay).save(out / "overlay.png")
    nuclei = [
        {
            "id": i,
            "centroid": [float(v) for v in c],
            "type": prediction.inst_types[i],
            "type_name": names.get(prediction.inst_types[i], ""),
        }
        for i, c in enumerate(prediction.centroids, start=1)
    ]
    (out / "nuclei.json").write_text(json.dumps({"image": str(args.image), "nuclei": nuclei}, indent=1))
    print(f"{len(nuclei)} nuclei in {image.shape[1]}x{image.shape[0]} px; wrote {out}")
    return 0
