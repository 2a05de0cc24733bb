"""PatchCamelyon (PCam) at the image label level: 96x96 lymph-node patches, tumour vs normal.

PCam is published at https://github.com/basveeling/pcam (Veeling et al., "Rotation Equivariant CNNs
for Digital Pathology", arXiv:1806.03962; from Camelyon16). Licence: CC0 for the data. This reader
targets the JPEG subset laid out as ``images/<split>/<label>/<file>.jpg`` with a ``labels.csv``
(columns ``file``, ``label``, ``split``), e.g. ``../shared/data/pcam_ai4all_subset``; it reads local
files only.

PCam has no nucleus annotations: every sample's ``inst`` and ``types`` are all zeros and the class
is in ``meta["label"]`` (``"tumour"`` = metastatic tissue in the centre 32x32 px, ``"normal"``).
The splits are the CSV's ``train`` / ``valid`` / ``test``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from synthaug.data.io import read_rgb
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample

LABEL_NAMES = {0: "normal", 1: "tumour"}
META = {"tissue": "lymph node", "assay": "H&E", "indication": "breast cancer metastasis", "source": "PCam"}


@register_reader("pcam")
class PCamReader(DatasetReader):
    """Label-level PCam patches; ``type_names`` is empty and ``label_names`` maps 0/1 to normal/tumour."""

    type_names: dict[int, str] = {}
    label_names = LABEL_NAMES
    layout_hint = "labels.csv (file,label,split) with images/<split>/<label>/*.jpg"

    def __init__(self, root: str | Path, **kwargs):
        super().__init__(root, **kwargs)
        self.rows = self._read_labels()

    @classmethod
    def detect(cls, root: Path) -> bool:
        if not (root / "labels.csv").is_file():
            return False
        with open(root / "labels.csv", newline="") as f:
            header = next(csv.reader(f), [])
        return {"file", "label", "split"} <= set(header)

    def splits(self) -> list[str]:
        return list(dict.fromkeys(row["split"] for row in self.rows))  # in the CSV's order

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        rows = [row for row in self.rows if row["split"] == split]
        samples = []
        for row in self._progress(rows, split, len(rows)):
            path = self.root / row["file"]
            image = read_rgb(path)
            empty = np.zeros(image.shape[:2], np.int32)
            meta = {**META, "label": LABEL_NAMES[int(row["label"])]}
            name = f"{split}_{Path(row['file']).stem}"
            samples.append(
                build_sample(image, empty, {}, valid_types=(), meta=meta, name=name, where=str(path))
            )
        return samples

    def _read_labels(self) -> list[dict[str, str]]:
        path = self.root / "labels.csv"
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        seen: set[tuple[str, str]] = set()
        for line, row in enumerate(rows, start=2):
            if row["label"] not in ("0", "1"):
                raise ValueError(
                    f"{path} line {line}: label must be 0 (normal) or 1 (tumour), got {row['label']!r}."
                )
            key = (row["split"], Path(row["file"]).stem)
            if key in seen:
                raise ValueError(
                    f"{path} line {line}: file name {key[1]!r} appears twice in split {key[0]!r}."
                )
            seen.add(key)
        return rows
