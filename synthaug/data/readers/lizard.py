"""Lizard (colonic nuclear instance segmentation and classification) and its CoNIC challenge patches.

Lizard is published by the TIA Centre, University of Warwick:
https://warwick.ac.uk/fac/cross_fac/tia/data/lizard (Graham et al., "Lizard: A Large-Scale Dataset
for Colonic Nuclear Instance Segmentation and Classification", ICCV Workshops 2021). The CoNIC
challenge (https://conic-challenge.grand-challenge.org) distributes it as 256x256 patches. Licence:
CC BY-NC-SA 4.0. These readers read local files only.

Layouts:

* ``lizard``: ``Lizard_Images*/<name>.png`` and ``Lizard_Labels/Labels/<name>.mat`` with
  ``inst_map``, ``id`` (N, 1) and ``class`` (N, 1); an optional ``info.csv`` (columns
  ``Filename``, ``Split``) gives the dataset's 3 folds as splits ``fold1..fold3``.
* ``conic``: ``images.npy`` (N, 256, 256, 3) uint8 and ``labels.npy`` (N, 256, 256, 2) with the
  instance map in channel 0 and the class map in channel 1; an optional ``patch_info.csv`` names
  each patch ``<source image>-<index>`` and the source image becomes the sample's ``group``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from synthaug.conditions import instance_types_from_type_map
from synthaug.data.io import as_integer_labels, load_mat, read_rgb
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample

TYPE_NAMES = {
    1: "neutrophil",
    2: "epithelial",
    3: "lymphocyte",
    4: "plasma",
    5: "eosinophil",
    6: "connective",
}
# Lizard's "connective" class gathers fibroblasts, muscle and endothelial cells.
TYPE_ALIASES = {"columnar": 2, "fibroblast": 6}
META = {"tissue": "colon", "assay": "H&E"}


@register_reader("lizard")
class LizardReader(DatasetReader):
    """Lizard's full-size images and ``.mat`` labels; types as in :data:`TYPE_NAMES`."""

    type_names = TYPE_NAMES
    type_aliases = TYPE_ALIASES
    layout_hint = "Lizard_Images*/*.png and Lizard_Labels/Labels/*.mat (optional info.csv)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any(root.glob("Lizard_Images*")) and any(root.rglob("Labels/*.mat"))

    def splits(self) -> list[str]:
        folds = self._folds()
        return sorted(set(folds.values())) if folds else ["all"]

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        folds = self._folds()
        labels = [
            p for p in sorted(self.root.rglob("Labels/*.mat")) if not folds or folds.get(p.stem) == split
        ]
        images = {
            p.stem: p for d in sorted(self.root.glob("Lizard_Images*")) for p in sorted(d.glob("*.png"))
        }
        samples = []
        for path in self._progress(labels, split, len(labels)):
            if path.stem not in images:
                raise ValueError(f"{path}: no image {path.stem}.png in {self.root}/Lizard_Images*.")
            mat = load_mat(path, ("inst_map", "id", "class"))
            ids = as_integer_labels(mat["id"], f"{path} id").ravel()
            classes = as_integer_labels(mat["class"], f"{path} class").ravel()
            if ids.shape != classes.shape:
                raise ValueError(f"{path}: `id` has {ids.size} rows but `class` has {classes.size}.")
            table = dict(zip(ids.tolist(), classes.tolist()))
            meta = {**META, "source": "Lizard"}
            samples.append(
                build_sample(
                    read_rgb(images[path.stem]),
                    mat["inst_map"],
                    table,
                    valid_types=self.type_names,
                    meta=meta,
                    name=path.stem,
                    where=str(path),
                    strict=self.strict,
                )
            )
        return samples

    def _folds(self) -> dict[str, str]:
        """Image name -> ``fold<n>`` from Lizard's ``info.csv``, or ``{}`` when there is none."""
        info = sorted(self.root.rglob("info.csv"))
        if not info:
            return {}
        with open(info[0], newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"Filename", "Split"} <= set(rows[0]):
            raise ValueError(f"{info[0]}: expected columns 'Filename' and 'Split'.")
        return {row["Filename"]: f"fold{row['Split']}" for row in rows}


@register_reader("conic")
class CoNICReader(DatasetReader):
    """The CoNIC challenge's ``images.npy`` + ``labels.npy`` patches; types as in :data:`TYPE_NAMES`."""

    type_names = TYPE_NAMES
    type_aliases = TYPE_ALIASES
    layout_hint = "images.npy (N,H,W,3) and labels.npy (N,H,W,2) (optional patch_info.csv)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "images.npy").is_file() and (root / "labels.npy").is_file()

    def splits(self) -> list[str]:
        return ["all"]

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        images = np.load(self.root / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(self.root / "labels.npy", mmap_mode="r", allow_pickle=False)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{self.root / 'images.npy'}: expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}."
            )
        if labels.shape != (*images.shape[:3], 2):
            raise ValueError(
                f"{self.root / 'labels.npy'}: expected shape {(*images.shape[:3], 2)} (instance, class) "
                f"to match images.npy, got {labels.shape}."
            )
        names = self._patch_names(images.shape[0])
        samples = []
        for i in self._progress(range(images.shape[0]), split, images.shape[0]):
            where = f"{self.root / 'labels.npy'} [{i}]"
            inst = as_integer_labels(labels[i, ..., 0], where)
            classes = as_integer_labels(labels[i, ..., 1], where)
            table = instance_types_from_type_map(inst, classes)
            if any(t == 0 for t in table.values()):
                raise ValueError(f"{where}: some instances lie on class 0 (background) in the class channel.")
            name = names[i]
            group = name.rsplit("-", 1)[0]
            samples.append(
                build_sample(
                    np.asarray(images[i]),
                    inst,
                    table,
                    valid_types=self.type_names,
                    meta={**META, "source": "CoNIC"},
                    name=name,
                    group=group,
                    where=where,
                )
            )
        return samples

    def _patch_names(self, n: int) -> list[str]:
        path = self.root / "patch_info.csv"
        if not path.is_file():
            return [f"patch_{i:05d}" for i in range(n)]
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]
        names = [row[0] for row in rows[1:]]  # the first row is the header
        if len(names) != n:
            raise ValueError(f"{path}: {len(names)} patch names but images.npy holds {n} patches.")
        return names
