"""PanNuke: 7,901 256x256 H&E patches of 19 tissues with 5 nucleus types, in 3 folds.

Published by the TIA Centre, University of Warwick: https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke
(Gamper et al., "PanNuke: an open pan-cancer histology dataset for nuclei instance segmentation and
classification", ECDP 2019; and arXiv:2003.10778). Licence: CC BY-NC-SA 4.0. This reader reads local
files only.

Layout as unzipped: ``Fold 1/images/fold1/images.npy`` (N, 256, 256, 3) float or uint8 RGB,
``Fold 1/images/fold1/types.npy`` (N,) tissue names, ``Fold 1/masks/fold1/masks.npy``
(N, 256, 256, 6): channels 0-4 hold the instance ids of neoplastic, inflammatory, connective,
dead and epithelial nuclei, channel 5 is background. Arrays are memory-mapped, so a fold is never
read into memory whole. PanNuke publishes no slide ids, so each patch is its own ``group``; the
folds are the dataset's own splits.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from synthaug.data.io import as_integer_labels
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample

_FILES = ("images.npy", "masks.npy", "types.npy")
_FOLD = re.compile(r"fold[\s_-]*(\d+)", re.IGNORECASE)
_NUM_TYPE_CHANNELS = 5


def _find_folds(root: Path) -> dict[str, dict[str, Path]]:
    """``{"fold1": {"images.npy": path, ...}}`` for every fold holding all three files."""
    folds: dict[str, dict[str, Path]] = {}
    for filename in _FILES:
        for path in sorted(root.rglob(filename)):
            match = _FOLD.search(str(path.relative_to(root)))
            key = f"fold{match.group(1)}" if match else "all"
            folds.setdefault(key, {})[filename] = path
    return {k: v for k, v in sorted(folds.items()) if len(v) == len(_FILES)}


@register_reader("pannuke")
class PanNukeReader(DatasetReader):
    """PanNuke folds; types 1 neoplastic, 2 inflammatory, 3 connective, 4 dead, 5 epithelial."""

    type_names = {1: "neoplastic", 2: "inflammatory", 3: "connective", 4: "dead", 5: "epithelial"}
    type_aliases = {"tumour": 1, "tumor": 1, "soft tissue": 3}
    layout_hint = "Fold N/images/foldN/{images,types}.npy and Fold N/masks/foldN/masks.npy"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(_find_folds(root))

    def splits(self) -> list[str]:
        return list(_find_folds(self.root))

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        files = _find_folds(self.root)[split]
        images = self._load_npy(files["images.npy"])
        masks = self._load_npy(files["masks.npy"])
        tissues = self._load_npy(files["types.npy"])
        n = images.shape[0]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{files['images.npy']}: expected (N, H, W, 3) RGB, got shape {images.shape}.")
        if (
            masks.shape[:3] != images.shape[:3]
            or masks.ndim != 4
            or masks.shape[-1] != _NUM_TYPE_CHANNELS + 1
        ):
            raise ValueError(
                f"{files['masks.npy']}: expected shape {(*images.shape[:3], _NUM_TYPE_CHANNELS + 1)} "
                f"to match images.npy, got {masks.shape}."
            )
        if tissues.shape != (n,):
            raise ValueError(
                f"{files['types.npy']}: expected ({n},) tissue names, got shape {tissues.shape}."
            )
        samples = []
        for i in self._progress(range(n), split, n):
            where = f"{files['masks.npy']} [{i}]"
            inst, table = self._merge_channels(np.asarray(masks[i]), where)
            tissue = str(tissues[i]).replace("_", " ").lower()
            meta = {"tissue": tissue, "assay": "H&E", "source": "PanNuke"}
            name = f"{split}_{i:05d}"
            image = self._to_uint8(np.asarray(images[i]), f"{files['images.npy']} [{i}]")
            samples.append(
                build_sample(
                    image, inst, table, valid_types=self.type_names, meta=meta, name=name, where=where
                )
            )
        return samples

    @staticmethod
    def _load_npy(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: cannot read the .npy file ({err}).") from err

    @staticmethod
    def _merge_channels(mask: np.ndarray, where: str) -> tuple[np.ndarray, dict[int, int]]:
        """One instance mask + type table from the per-type channels (ids may repeat across channels)."""
        inst = np.zeros(mask.shape[:2], np.int64)
        table: dict[int, int] = {}
        offset = 0
        for channel in range(_NUM_TYPE_CHANNELS):
            ids = as_integer_labels(mask[..., channel], f"{where} channel {channel}")
            # Offsetting keeps ids of different channels distinct; where channels overlap (rare
            # annotation slips) the first type wins rather than mixing two nuclei.
            free = (ids > 0) & (inst == 0)
            inst[free] = ids[free] + offset
            table.update(dict.fromkeys((np.unique(ids[free]) + offset).tolist(), channel + 1))
            offset += int(ids.max(initial=0))
        return inst, table

    @staticmethod
    def _to_uint8(image: np.ndarray, where: str) -> np.ndarray:
        if image.dtype == np.uint8:
            return image
        if image.dtype.kind != "f" or not np.isfinite(image).all() or image.min() < 0 or image.max() > 255:
            raise ValueError(f"{where}: image must be uint8 or float in [0, 255], got {image.dtype}.")
        # PanNuke ships float64 in [0, 255]; an H&E patch whose brightest pixel is <= 1 can only be a
        # [0, 1]-scaled copy.
        scale = 255.0 if image.max() <= 1.0 else 1.0
        return np.rint(image * scale).astype(np.uint8)
