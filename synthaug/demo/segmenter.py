"""One plain segmentation run on type maps, with or without synthesis: the demo's and the benchmarks'.

Kept deliberately plain: it is what a user's own MONAI loop looks like, with ``SyntheticAugment`` as
one more dictionary transform in front of the geometric augmentations every run shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug._validation import check_choice
from synthaug.data import NucleiDataset, Sample

ARCHS = ("monai-basicunet", "smp-unet")


@dataclass
class SegmentationRun:
    """Losses per step and test predictions of one training run."""

    losses: list[float]
    predictions: list[np.ndarray]  # (H, W) class maps, one per test sample
    synthetic_fraction: float  # share of training draws that came from the synthetic cache


def build_segmenter(arch: str, num_classes: int) -> torch.nn.Module:
    """SMP ``Unet`` (ResNet-18, random init) or a small MONAI ``BasicUNet``."""
    check_choice(arch, "arch", ARCHS)
    if arch == "smp-unet":
        import segmentation_models_pytorch as smp

        return smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=num_classes)
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=2, in_channels=3, out_channels=num_classes, features=(16, 16, 32, 64, 128, 16)
    )


def geometric_augmentations(keys: Sequence[str] = ("image", "label")) -> list[Callable]:
    """Flips and 90-degree turns, drawn once per sample for image and label together."""
    from monai.transforms import RandFlipd, RandRotate90d

    return [
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys=keys, prob=0.5),
    ]


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "image": torch.as_tensor(np.stack([np.asarray(i["image"], np.float32) for i in items])),
        "label": torch.as_tensor(np.stack([np.asarray(i["label"], np.int64) for i in items])),
        "is_synthetic": torch.as_tensor([bool(i.get("is_synthetic", False)) for i in items]),
    }


def train_segmenter(
    train: Sequence[Sample],
    test: Sequence[Sample],
    *,
    num_classes: int,
    steps: int,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
    synthetic: Callable | None = None,
    arch: str = "monai-basicunet",
    lr: float = 3e-3,
    desc: str = "segmenter",
) -> SegmentationRun:
    """Train a segmenter for ``steps`` steps on type maps and predict the test set.

    Every call gets the same network, optimiser (AdamW + one-cycle), loss (DiceCE), step budget and
    geometric augmentations, so runs differ only in ``synthetic`` and ``seed``.

    Args:
        train, test: samples of equal tile size.
        num_classes: background + nucleus types.
        steps: optimiser steps (batches drawn with replacement by a seeded sampler).
        batch_size: samples per step.
        seed: seeds the weights, the batch order and the transforms' random state.
        device: torch device.
        synthetic: optional dictionary transform put before the geometry (a ``SyntheticAugment``).
        arch: ``"monai-basicunet"`` or ``"smp-unet"``.
        lr: peak learning rate.
        desc: the progress bar's label.
    """
    from monai.losses import DiceCELoss
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    transform = Compose(([synthetic] if synthetic is not None else []) + geometric_augmentations())
    transform.set_random_state(seed)
    dataset = NucleiDataset(list(train), transform=transform)
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=steps * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_collate)
    model = build_segmenter(arch, num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses, drawn_synthetic = [], 0
    model.train()
    for batch in tqdm(loader, total=steps, desc=desc, unit="step"):
        loss = loss_fn(model(batch["image"].to(device)), batch["label"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        drawn_synthetic += int(batch["is_synthetic"].sum())
    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(test), 16):
            chunk = np.stack([s.to_dict()["image"] for s in test[start : start + 16]])
            predictions.extend(
                model(torch.as_tensor(chunk).to(device)).argmax(1).cpu().numpy().astype(np.int64)
            )
    set_determinism(seed=None)
    return SegmentationRun(losses, predictions, drawn_synthetic / (steps * batch_size))
