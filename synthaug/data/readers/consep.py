"""CoNSeP: colorectal nuclear segmentation and phenotypes (the HoVer-Net paper's dataset).

Published by the TIA Centre, University of Warwick: https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet
(41 H&E tiles of 1000x1000 px at 40x from 16 colorectal adenocarcinoma slides; 27 train, 14 test).
Licence: none stated; the authors' terms are to cite Graham et al., "HoVer-Net: Simultaneous
Segmentation and Classification of Nuclei in Multi-Tissue Histology Images", Medical Image Analysis
58 (2019) 101563. This reader reads local files only.

Two layouts are read:

* the original release: ``Train/Images/train_1.png`` + ``Train/Labels/train_1.mat`` (keys
  ``inst_map``, ``inst_type`` with CoNSeP's 7 classes, ...), one sample per 1000-px tile, the 7
  classes merged to 4 as in the HoVer-Net paper;
* the patch layout of ``../shared/data/consep``: a ``patches.csv`` beside ``Train``/``Test`` with
  256x256 ``.jpg`` + ``.mat`` patches whose types are already merged; the sample's ``group`` is
  the tile (``patches.csv`` column ``tile``), so splits keep a tile's 16 patches together.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from synthaug.data.io import as_integer_labels, load_mat, read_rgb
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample
from synthaug.data.vocabulary import CONSEP_TYPES

# CoNSeP's 7 released classes -> the 4 of the HoVer-Net paper (Graham et al. 2019, section 4.1):
# 1 other, 2 inflammatory, 3+4 healthy / malignant epithelial, 5+6+7 fibroblast / muscle / endothelial.
ORIGINAL_TO_MERGED = {1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 4}
META = {"tissue": "colon", "indication": "colorectal adenocarcinoma", "assay": "H&E", "source": "CoNSeP"}
_SPLIT_DIRS = {"train": "Train", "test": "Test"}


@register_reader("consep")
class CoNSePReader(DatasetReader):
    """CoNSeP, original tiles or the 256-px patch layout (detected by ``patches.csv``).

    Types: 1 other, 2 inflammatory, 3 epithelial (in colon, the columnar epithelial cells: alias
    ``"columnar"``; healthy and dysplastic/malignant merged), 4 spindle (fibroblast, muscle and
    endothelial merged).

    Example:
        >>> reader = open_dataset("../shared/data/consep")          # doctest: +SKIP
        >>> train = reader.load("train"); reader.resolve_type("columnar")  # doctest: +SKIP
        3
    """

    type_names = dict(CONSEP_TYPES.names)
    type_aliases = dict(CONSEP_TYPES.aliases)
    layout_hint = "Train/ and/or Test/ with Images/ and Labels/*.mat (plus patches.csv for the patch layout)"

    def __init__(self, root: str | Path, **kwargs):
        super().__init__(root, **kwargs)
        self.patch_table = self._read_patch_table() if (self.root / "patches.csv").is_file() else None

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any(
            (root / d / "Images").is_dir() and any((root / d / "Labels").glob("*.mat"))
            for d in _SPLIT_DIRS.values()
        )

    def splits(self) -> list[str]:
        return [s for s, d in _SPLIT_DIRS.items() if (self.root / d / "Labels").is_dir()]

    @property
    def layout(self) -> str:
        """``"patches"`` (the 256-px layout with ``patches.csv``) or ``"tiles"`` (the original release)."""
        return "patches" if self.patch_table is not None else "tiles"

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        folder = self.root / _SPLIT_DIRS[split]
        labels = sorted((folder / "Labels").glob("*.mat"))
        return [self._load_one(folder, path) for path in self._progress(labels, split, len(labels))]

    def load_tiles(self, split: str) -> list[Sample]:
        """Every whole tile of ``split``: stitched from its patches, or as stored in the original layout.

        HoVer-Net and its successors score CoNSeP per whole 1000-px tile; scoring 256-px patches
        gives other numbers for the same predictions (nuclei cut at patch borders count twice,
        and the detection F1's pairing sees fewer nuclei at once), so use tiles to compare with them.
        """
        if self.patch_table is None:
            return self.load(split)
        self._check_split(split)
        tiles = sorted({r["tile"] for r in self.patch_table.values() if r["split"] == split})
        return [self.stitch_tile(split, t) for t in self._progress(tiles, split, len(tiles))]

    def stitch_tile(self, split: str, tile: str) -> Sample:
        """Reassemble one tile of the patch layout from its 4x4 grid of patches.

        Nuclei cut by a patch border are merged back into one instance through the patches'
        ``inst_uid`` (the nucleus id in the whole tile).

        Raises:
            ValueError: for the original layout, or when ``tile`` has no patches in ``split``.
        """
        self._check_split(split)
        if self.patch_table is None:
            raise ValueError(f"{self.root} is the original tile layout; its tiles need no stitching.")
        rows = [r for r in self.patch_table.values() if r["tile"] == tile and r["split"] == split]
        if not rows:
            tiles = sorted({r["tile"] for r in self.patch_table.values() if r["split"] == split})
            raise ValueError(f"no patches of tile {tile!r} in split {split!r}; tiles there: {tiles[:5]}...")
        folder = self.root / _SPLIT_DIRS[split]
        pieces = []
        for row in rows:
            mat_path = folder / "Labels" / f"{row['name']}.mat"
            mat = load_mat(mat_path, ("inst_map", "inst_type", "inst_uid"))
            inst = as_integer_labels(mat["inst_map"], str(mat_path))
            uid = np.concatenate([[0], np.asarray(mat["inst_uid"]).ravel()]).astype(np.int64)
            if inst.max() >= uid.size:
                raise ValueError(
                    f"{mat_path}: inst_map has id {inst.max()} but inst_uid has {uid.size - 1} rows."
                )
            types = dict(zip(uid[1:].tolist(), np.asarray(mat["inst_type"]).ravel().astype(int).tolist()))
            image = read_rgb(self._image_path(folder, row["name"]))
            pieces.append((int(row["grid_row"]), int(row["grid_col"]), image, uid[inst], types))
        h, w = pieces[0][2].shape[:2]
        n_rows = 1 + max(p[0] for p in pieces)
        n_cols = 1 + max(p[1] for p in pieces)
        image = np.zeros((n_rows * h, n_cols * w, 3), np.uint8)
        inst = np.zeros((n_rows * h, n_cols * w), np.int64)
        table: dict[int, int] = {}
        for r, c, img, uids, types in pieces:
            image[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
            inst[r * h : (r + 1) * h, c * w : (c + 1) * w] = uids
            conflicts = sorted(u for u, t in types.items() if table.get(u, t) != t)
            if conflicts:
                raise ValueError(f"tile {tile!r}: nuclei {conflicts[:5]} differ in type between patches.")
            table.update(types)
        return build_sample(
            image,
            inst,
            table,
            valid_types=self.type_names,
            meta=META,
            name=tile,
            group=tile,
            where=f"{folder} tile {tile}",
            strict=self.strict,
        )

    def _load_one(self, folder: Path, mat_path: Path) -> Sample:
        name = mat_path.stem
        mat = load_mat(mat_path, ("inst_map", "inst_type"))
        inst_type = np.asarray(as_integer_labels(mat["inst_type"], f"{mat_path} inst_type")).ravel()
        if self.layout == "tiles":
            unknown = sorted(set(inst_type.tolist()) - set(ORIGINAL_TO_MERGED))
            if unknown:
                raise ValueError(f"{mat_path}: inst_type has classes {unknown}; CoNSeP's classes are 1..7.")
            inst_type = np.array([ORIGINAL_TO_MERGED[t] for t in inst_type.tolist()], dtype=np.int64)
            group = name
        else:
            if name not in self.patch_table:
                raise ValueError(f"{mat_path}: patch {name!r} has no row in {self.root / 'patches.csv'}.")
            group = self.patch_table[name]["tile"]
        # CoNSeP's convention: row k-1 of inst_type is the type of instance id k.
        table = {k + 1: int(t) for k, t in enumerate(inst_type.tolist())}
        image = read_rgb(self._image_path(folder, name))
        return build_sample(
            image,
            mat["inst_map"],
            table,
            valid_types=self.type_names,
            meta=META,
            name=name,
            group=group,
            where=str(mat_path),
            strict=self.strict,
        )

    @staticmethod
    def _image_path(folder: Path, name: str) -> Path:
        for suffix in (".png", ".jpg", ".jpeg", ".tif"):
            path = folder / "Images" / f"{name}{suffix}"
            if path.is_file():
                return path
        raise ValueError(f"no image for label {name!r} in {folder / 'Images'} (looked for .png/.jpg/.tif).")

    def _read_patch_table(self) -> dict[str, dict[str, str]]:
        path = self.root / "patches.csv"
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        required = {"split", "name", "tile", "grid_row", "grid_col"}
        if not rows or not required <= set(rows[0]):
            raise ValueError(f"{path}: expected a header with columns {sorted(required)}.")
        return {row["name"]: row for row in rows}
