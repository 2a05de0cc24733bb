"""Train a segmentation-models-pytorch Unet on nuclei types from a fixed real:synthetic mix.

``SyntheticMixDataset`` presents every real sample once per epoch plus an exact number of cached
synthetic pairs (re-drawn each epoch from ``(seed, epoch)``), in the real samples' dictionary
format; albumentations does the spatial augmentation of both.

    # toy data and a toy cache, CPU, under two minutes
    python examples/smp_train.py --quick

    # CoNSeP patches, one synthetic per three real, over-representing inflammatory nuclei (type 2)
    python examples/smp_train.py --data ../shared/data/consep --cache runs/consep_cache.zarr \\
        --ratio 0.25 --target-types 2 --epochs 20

With ``--quick`` (a dozen optimiser steps) the encoder's BatchNorm running statistics have not
settled, so the printed validation IoU stays near 0: the run checks the pipeline, not the model.
The toy cache holds procedurally rendered tiles (``synthaug.data.toy``), standing in for pairs sampled
from a trained MSDM; it exercises the data path, not the value of synthetic data.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from synthaug.augment import SyntheticMixDataset
from synthaug.data import NucleiDataset
from synthaug.data.readers import open_dataset
from synthaug.data.toy import make_toy_samples
from synthaug.sampling.cache import SyntheticCache


def toy_cache(url: str, n: int, size: int, seed: int) -> SyntheticCache:
    """A cache of toy-rendered tiles (stand-in for `synthaug sample` output)."""
    cache = SyntheticCache.create(url, height=size, width=size, num_types=4, attrs={"source": "toy"})
    tiles = make_toy_samples(n, size, size, seed=seed, progress=True)
    cache.append_samples(tiles)
    return cache


def on_dicts(transform: A.Compose) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Apply an albumentations pipeline to a ``Sample.to_dict()`` item (CHW arrays <-> HWC)."""

    def apply(item: dict[str, Any]) -> dict[str, Any]:
        out = transform(image=np.moveaxis(item["image"], 0, -1), masks=[item["label"][0], item["inst"][0]])
        # albumentations stacks the masks and may change their dtype: restore the item's dtypes.
        label = np.ascontiguousarray(out["masks"][0][None], dtype=item["label"].dtype)
        inst = np.ascontiguousarray(out["masks"][1][None], dtype=item["inst"].dtype)
        image = np.ascontiguousarray(np.moveaxis(out["image"], -1, 0))
        return {**item, "image": image, "label": label, "inst": inst}

    return apply


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: toy data)")
    parser.add_argument("--cache", help="SyntheticCache path/URL; a toy cache is built if absent")
    parser.add_argument("--quick", action="store_true", help="tiny run on toy data (CPU, < 2 minutes)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128, help="training crop size (multiple of 8)")
    parser.add_argument("--ratio", type=float, default=0.25, help="synthetic share of every epoch")
    parser.add_argument("--target-types", type=int, nargs="*", help="type ids to over-represent")
    parser.add_argument("--encoder", default="resnet18", help="any SMP encoder (trained from scratch)")
    parser.add_argument("--limit", type=int, help="use at most this many real training samples")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the trained weights here (safetensors)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.crop, args.limit = min(args.epochs, 2), 64, args.limit or 32
    if args.data is not None and args.cache is None:
        parser.error("--data needs --cache (a cache sampled for this dataset with `synthaug sample`)")
    return args


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as workdir:
        if args.data is None:
            train = make_toy_samples(args.limit or 64, 64, 64, seed=args.seed)
            val = make_toy_samples(16, 64, 64, seed=args.seed + 1)
        else:
            reader = open_dataset(args.data)
            train, val = reader.load("train"), reader.load("test")[:64]
        train = train[: args.limit] if args.limit else train
        if args.cache is None:
            size = train[0].image.shape[0]
            cache = toy_cache(f"{workdir}/toy_cache.zarr", 2 * len(train), size, seed=args.seed + 2)
        else:
            cache = SyntheticCache.open(args.cache)
        classes = cache.num_types + 1

        augment = A.Compose([A.RandomCrop(args.crop, args.crop), A.HorizontalFlip(), A.VerticalFlip(),
                             A.RandomRotate90()], seed=args.seed)
        mix = SyntheticMixDataset(NucleiDataset(train), cache, args.ratio, seed=args.seed,
                                  target_types=args.target_types, num_types=cache.num_types,
                                  transform=on_dicts(augment))
        val_loader = DataLoader(NucleiDataset(val), batch_size=args.batch_size)

        model = smp.Unet(args.encoder, encoder_weights=None, encoder_depth=3, decoder_channels=(64, 32, 16),
                         classes=classes).to(device)
        dice_loss, ce_loss = smp.losses.DiceLoss("multiclass"), torch.nn.CrossEntropyLoss()
        optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
        for epoch in range(args.epochs):
            mix.set_epoch(epoch)  # a fresh synthetic draw; workers started below see it
            loader = DataLoader(mix, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
            model.train()
            losses = []
            for batch in tqdm(loader, desc=f"epoch {epoch}", leave=False):
                image, label = batch["image"].to(device), batch["label"][:, 0].to(device)
                optimiser.zero_grad()
                logits = model(image)
                loss = dice_loss(logits, label) + ce_loss(logits, label)
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            model.eval()
            stats = []
            with torch.no_grad():
                for batch in val_loader:
                    pred = model(batch["image"].to(device)).argmax(1)
                    truth = batch["label"][:, 0].to(device)
                    stats.append(smp.metrics.get_stats(pred, truth, mode="multiclass", num_classes=classes))
            tp, fp, fn, tn = (torch.cat(s) for s in zip(*stats))
            iou = smp.metrics.iou_score(tp[:, 1:], fp[:, 1:], fn[:, 1:], tn[:, 1:], reduction="micro")
            print(f"epoch {epoch}: loss {np.mean(losses):.3f}, {mix.num_real} real + {mix.num_synthetic} "
                  f"synthetic, val IoU (nuclei types) {iou.item():.3f}")
        if args.out is not None:
            from safetensors.torch import save_model

            args.out.mkdir(parents=True, exist_ok=True)
            save_model(model, str(args.out / "smp_unet.safetensors"))
            print(f"weights written to {args.out / 'smp_unet.safetensors'}")


if __name__ == "__main__":
    main()
