"""The demo's small segmentation run: a MONAI ``BasicUNet`` on type maps, with or without synthesis.

Kept deliberately plain: it is what a user's own MONAI loop looks like, with ``SyntheticAugment``
as one more dictionary transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug.data import NucleiDataset, Sample


@dataclass
class SegmentationRun:
    """Losses per step and test predictions of one training run."""

    losses: list[float]
    predictions: list[np.ndarray]  # (H, W) class maps, one per test sample
    synthetic_fraction: float  # share of training draws that came from the synthetic cache


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
    transform: Callable | None = None,
    desc: str = "segmenter",
) -> SegmentationRun:
    """Train a ``monai.networks.nets.BasicUNet`` for ``steps`` steps and predict the test set.

    Args:
        train, test: samples of equal tile size.
        num_classes: background + nucleus types.
        steps: optimiser steps (batches drawn with replacement by a seeded sampler).
        batch_size: samples per step.
        seed: seeds the weights, the batch order and ``transform``'s random state.
        device: torch device.
        transform: optional dictionary transform applied to each training item (e.g. a MONAI
            ``Compose`` holding ``SyntheticAugment``).
        desc: the progress bar's label.
    """
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    if transform is not None and hasattr(transform, "set_random_state"):
        transform.set_random_state(seed)
    dataset = NucleiDataset(list(train), transform=transform)
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=steps * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_collate)
    model = BasicUNet(
        spatial_dims=2, in_channels=3, out_channels=num_classes, features=(16, 16, 32, 64, 128, 16)
    )
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses, synthetic = [], 0
    model.train()
    for batch in tqdm(loader, total=steps, desc=desc, unit="step"):
        image, label = batch["image"].to(device), batch["label"].to(device)
        loss = loss_fn(model(image), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        synthetic += int(batch["is_synthetic"].sum())
    model.eval()
    predictions = []
    with torch.no_grad():
        for sample in test:
            image = torch.as_tensor(sample.to_dict()["image"])[None].to(device)
            predictions.append(model(image).argmax(1)[0].cpu().numpy().astype(np.int64))
    set_determinism(seed=None)
    return SegmentationRun(losses, predictions, synthetic / max(1, steps * batch_size))
