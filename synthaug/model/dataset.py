"""Training crops for MSDM: geometry on image and masks together, colour on the image only, then
conditions recomputed from the augmented pair so they always describe exactly what the model sees."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from synthaug.conditions import ConditionChannels, build_conditions, colour_stats
from synthaug.data import Sample

# White for padded image borders (slide background), 0 (= background) for the masks.
_PAD = {"border_mode": cv2.BORDER_CONSTANT, "fill": 255, "fill_mask": 0}


def _transform(resolution: int, augment: bool, seed: int | None) -> A.Compose:
    pad = A.PadIfNeeded(min_height=resolution, min_width=resolution, **_PAD)
    if not augment:
        return A.Compose([pad, A.CenterCrop(resolution, resolution)], seed=seed)
    return A.Compose(
        [
            pad,
            A.RandomCrop(resolution, resolution),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            # Mild stain variation: large hue shifts would leave the H&E colour space.
            A.HueSaturationValue(hue_shift_limit=6, sat_shift_limit=12, val_shift_limit=8, p=0.8),
            A.RandomBrightnessContrast(brightness_limit=0.08, contrast_limit=0.08, p=0.5),
        ],
        seed=seed,
    )


def mask_available(samples: Sequence[Sample]) -> list[bool]:
    """Whether each sample's instance mask is an annotation (possibly of a tile without nuclei).

    A source (``meta["source"]``) none of whose samples has a single nucleus is label-level data
    (e.g. PCam: image + class only), so its all-zero masks mean "not annotated"; in an annotated
    source an empty mask is a real tile without nuclei and is kept as a condition.
    """
    annotated = {s.meta.get("source", "") for s in samples if s.inst.any()}
    return [s.meta.get("source", "") in annotated for s in samples]


class MSDMTrainDataset(Dataset):
    """Random crops of ``Sample`` records with their MSDM conditions.

    Args:
        samples: training samples. Label-level samples (see :func:`mask_available`) yield
            ``has_mask=False``: their spatial conditions are always dropped in training.
        channels: the condition stack to build.
        resolution: crop size; smaller samples are padded (white image, background masks).
        text_ids: per sample, the row of its prompt in the caller's text embedding table.
        augment: random crop + flips/rot90 + colour jitter; ``False`` = centre crop, no jitter.
        seed: run seed. The augmentation of item ``i`` in epoch ``e`` (:meth:`set_epoch`) is drawn
            from ``(seed, e, i)`` alone, so it depends neither on the DataLoader worker that builds
            it nor on how many items came before: a resumed run sees the same crops.
        has_mask: per sample, whether its mask is an annotation (default: :func:`mask_available`).

    Each item: ``image (3,H,W)`` float32 in [-1, 1], ``conditions (C,H,W)`` float32, ``colour (6,)``
    float32 (measured on the augmented crop), ``text_id`` int64, ``has_mask`` bool.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        channels: ConditionChannels,
        resolution: int,
        text_ids: Sequence[int],
        augment: bool = True,
        seed: int | None = None,
        has_mask: Sequence[bool] | None = None,
    ):
        if len(samples) == 0:
            raise ValueError("`samples` is empty; MSDM needs at least one training sample.")
        if not all(isinstance(s, Sample) for s in samples):
            raise TypeError("`samples` must hold synthaug.data.Sample records.")
        if len(text_ids) != len(samples):
            raise ValueError(
                f"`text_ids` has {len(text_ids)} entries for {len(samples)} samples; give one each."
            )
        self.samples = list(samples)
        self.channels = channels
        self.resolution = resolution
        self.text_ids = [int(t) for t in text_ids]
        self.has_mask = mask_available(self.samples) if has_mask is None else [bool(m) for m in has_mask]
        if len(self.has_mask) != len(self.samples):
            raise ValueError(f"`has_mask` has {len(self.has_mask)} entries for {len(self.samples)} samples.")
        self.seed = 0 if seed is None else int(seed)
        self.epoch = 0
        self.transform = _transform(resolution, augment, self.seed)

    def set_epoch(self, epoch: int) -> MSDMTrainDataset:
        """Select the augmentation draws of pass ``epoch`` (set before iterating a DataLoader over it)."""
        self.epoch = int(epoch)
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented ``(image HWC uint8, inst, types)`` triple, before conversion."""
        sample = self.samples[index]
        self.transform.set_random_seed(item_seed(self.seed, self.epoch, index))
        out = self.transform(image=sample.image, masks=[sample.inst, sample.types])
        inst, types = out["masks"]
        return np.ascontiguousarray(out["image"]), np.ascontiguousarray(inst), np.ascontiguousarray(types)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, inst, types = self.crop(index)
        colour = colour_stats(image, inst).as_vector().astype(np.float32)
        conditions = build_conditions(inst, type_map=types, colour=colour, channels=self.channels)
        return {
            "image": torch.from_numpy(np.moveaxis(image, -1, 0).astype(np.float32) / 127.5 - 1.0),
            "conditions": torch.from_numpy(np.ascontiguousarray(conditions, dtype=np.float32)),
            "colour": torch.from_numpy(colour),
            "text_id": torch.tensor(self.text_ids[index], dtype=torch.long),
            "has_mask": torch.tensor(self.has_mask[index]),
        }


def item_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A 32-bit seed of its own for each (run seed, epoch, index) and stream (0: augmentation)."""
    return int(np.random.SeedSequence([seed, epoch, index], spawn_key=(stream,)).generate_state(1)[0])


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A fresh permutation of ``range(n)`` per epoch, drawn from ``(seed, epoch)`` alone, so a run
    resumed at epoch ``e`` sees the order an uninterrupted run would (``set_epoch`` before each pass)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, 0, stream=1))
        return iter(torch.randperm(self.n, generator=generator).tolist())
