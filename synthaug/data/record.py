"""The common sample record every reader produces, and a torch Dataset over a list of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthaug._validation import check_instance_mask


@dataclass
class Sample:
    """One annotated tile or patch.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        inst: ``(H, W)`` int32 instance mask, 0 = background, 1..N nuclei.
        types: ``(H, W)`` uint8 type map, 0 = background, 1..T the dataset's nucleus types.
        inst_types: instance id -> type id, for every id in ``inst``.
        meta: free-text metadata used for conditioning and reporting; conventional keys are
            ``tissue``, ``assay``, ``indication``, ``source`` (and ``label`` for image-level classes).
        name: unique name of this sample within its dataset.
        group: the tile/slide the sample was cut from; splits never separate a group.
    """

    image: np.ndarray
    inst: np.ndarray
    types: np.ndarray
    inst_types: dict[int, int] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    name: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.image, np.ndarray) or self.image.dtype != np.uint8 or self.image.ndim != 3:
            got = getattr(self.image, "dtype", type(self.image).__name__)
            raise TypeError(
                f"Sample {self.name!r}: `image` must be a (H, W, 3) uint8 array, got {got} "
                f"with shape {getattr(self.image, 'shape', None)}."
            )
        if self.image.shape[-1] != 3:
            raise ValueError(
                f"Sample {self.name!r}: `image` must have 3 channels, got shape {self.image.shape}."
            )
        self.inst = check_instance_mask(self.inst, "inst").astype(np.int32, copy=False)
        if not isinstance(self.types, np.ndarray) or self.types.ndim != 2:
            raise TypeError(f"Sample {self.name!r}: `types` must be a (H, W) integer array.")
        self.types = self.types.astype(np.uint8, copy=False)
        hw = self.image.shape[:2]
        if self.inst.shape != hw or self.types.shape != hw:
            raise ValueError(
                f"Sample {self.name!r}: image {hw}, inst {self.inst.shape} and types {self.types.shape} "
                "must share height and width."
            )
        self.inst_types = {int(k): int(v) for k, v in self.inst_types.items()}
        self.meta = {str(k): str(v) for k, v in self.meta.items()}
        if not self.group:
            self.group = self.name

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def to_dict(self) -> dict[str, Any]:
        """MONAI-style dictionary: channel-first arrays, ready for dictionary transforms.

        ``image`` (3, H, W) float32 in [0, 1]; ``label`` (1, H, W) int64 type map (the semantic
        segmentation target); ``inst`` (1, H, W) int32; ``name``; ``meta`` (dict of str).
        """
        return {
            "image": np.moveaxis(self.image, -1, 0).astype(np.float32) / 255.0,
            "label": self.types[None].astype(np.int64),
            "inst": self.inst[None],
            "name": self.name,
            "meta": dict(self.meta),
        }


class NucleiDataset:
    """A ``torch.utils.data.Dataset`` of ``Sample.to_dict()`` dictionaries.

    Args:
        samples: the samples, e.g. ``open_dataset(path).load("train")``.
        transform: optional callable applied to each dictionary (a MONAI ``Compose`` of dictionary
            transforms, say).
    """

    def __init__(
        self, samples: Sequence[Sample], transform: Callable[[Mapping[str, Any]], Any] | None = None
    ):
        if not isinstance(samples, Sequence) or not all(isinstance(s, Sample) for s in samples):
            raise TypeError("`samples` must be a sequence of synthaug.data.Sample records.")
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        item = self.samples[index].to_dict()
        return self.transform(item) if self.transform is not None else item
