"""Train a MONAI BasicUNet on nuclei types with SyntheticAugment mixing cached synthetic pairs in.

One line adds synthetic data to an ordinary MONAI pipeline: ``SyntheticAugment`` goes into the
``Compose`` before the spatial transforms, so real and synthetic tiles get the same crops and flips.

    # toy data and a toy cache, CPU, under two minutes
    python examples/monai_train.py --quick

    # CoNSeP patches and a cache sampled with `synthaug sample`
    python examples/monai_train.py --data ../shared/data/consep --cache runs/consep_cache.zarr \\
        --target-types 2 --epochs 20

The toy cache holds procedurally rendered tiles (``synthaug.data.toy``), standing in for pairs sampled
from a trained MSDM; it exercises the data path, not the value of synthetic data.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks import one_hot
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandRotate90d, RandSpatialCropd
from monai.utils import set_determinism
from tqdm import tqdm

from synthaug.augment import SyntheticAugment
from synthaug.data.readers import open_dataset
from synthaug.data.toy import make_toy_samples
from synthaug.sampling.cache import SyntheticCache

KEYS = ("image", "label", "inst")


def toy_cache(url: str, n: int, size: int, seed: int) -> SyntheticCache:
    """A cache of toy-rendered tiles (stand-in for `synthaug sample` output)."""
    cache = SyntheticCache.create(url, height=size, width=size, num_types=4, attrs={"source": "toy"})
    tiles = make_toy_samples(n, size, size, seed=seed, progress=True)
    cache.append_samples(tiles)
    return cache


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: toy data)")
    parser.add_argument("--cache", help="SyntheticCache path/URL; a toy cache is built if absent")
    parser.add_argument("--quick", action="store_true", help="tiny run on toy data (CPU, < 2 minutes)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128, help="training crop size (multiple of 16)")
    parser.add_argument("--prob", type=float, default=0.5, help="probability of a synthetic draw per sample")
    parser.add_argument("--mode", choices=("replace", "paste"), default="replace")
    parser.add_argument("--target-types", type=int, nargs="*", help="type ids to over-represent")
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


def load_samples(args: argparse.Namespace, workdir: str) -> tuple[list, list, SyntheticCache]:
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
    return train, val, cache


def main() -> None:
    args = parse_args()
    set_determinism(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as workdir:
        train, val, cache = load_samples(args, workdir)
        num_types = cache.num_types
        train_tf = Compose([
            EnsureTyped(KEYS, track_meta=False),  # deterministic: cached once by CacheDataset
            SyntheticAugment(cache, prob=args.prob, mode=args.mode, target_types=args.target_types,
                             num_types=num_types),
            RandSpatialCropd(KEYS, roi_size=(args.crop, args.crop), random_size=False),
            RandFlipd(KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(KEYS, prob=0.5, spatial_axis=1),
            RandRotate90d(KEYS, prob=0.5),
        ])
        train_ds = CacheDataset([s.to_dict() for s in train], transform=train_tf, progress=False)
        val_ds = CacheDataset([s.to_dict() for s in val], transform=EnsureTyped(KEYS, track_meta=False),
                              progress=False)
        # monai.data.DataLoader re-seeds every worker's transforms (different synthetic draws per worker).
        train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True,
                                  num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
        val_loader = DataLoader(val_ds, batch_size=args.batch_size)

        model = BasicUNet(spatial_dims=2, in_channels=3, out_channels=num_types + 1,
                          features=(16, 16, 32, 64, 128, 16)).to(device)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
        dice = DiceMetric(include_background=False, ignore_empty=True)
        for epoch in range(args.epochs):
            model.train()
            losses, synthetic, seen = [], 0, 0
            for batch in tqdm(train_loader, desc=f"epoch {epoch}", leave=False):
                image, label = batch["image"].to(device), batch["label"].to(device)
                optimiser.zero_grad()
                loss = loss_fn(model(image), label)
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
                synthetic += int(batch["is_synthetic"].sum())
                seen += len(image)
            model.eval()
            dice.reset()
            with torch.no_grad():
                for batch in val_loader:
                    pred = model(batch["image"].to(device)).argmax(1, keepdim=True)
                    dice(one_hot(pred, num_types + 1), one_hot(batch["label"].to(device), num_types + 1))
            print(f"epoch {epoch}: loss {np.mean(losses):.3f}, synthetic {synthetic}/{seen}, "
                  f"val Dice (types) {dice.aggregate().item():.3f}")
        if args.out is not None:
            from safetensors.torch import save_model

            args.out.mkdir(parents=True, exist_ok=True)
            save_model(model, str(args.out / "basic_unet.safetensors"))
            print(f"weights written to {args.out / 'basic_unet.safetensors'}")


if __name__ == "__main__":
    main()
