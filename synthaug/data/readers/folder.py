"""A generic folder of your own tiles and masks.

Layout (``<split>/`` level optional; without it the splits come from ``metadata.csv`` or are ``all``)::

    root/[<split>/]images/<name>.png|.jpg|.tif     RGB tiles
    root/[<split>/]labels/<name>.npy|.png|.tif     (H, W) instance ids, or .npy (H, W, 2) = ids + type map
    root/[<split>/]types/<name>.npy|.png|.tif      optional (H, W) type maps (when labels hold ids only)
    root/metadata.csv                              optional: a ``name`` column (file stem), ``split`` and
                                                   ``group`` columns, any other column becomes ``meta``
    root/classes.json                              optional: {"1": "tumour", "2": "lymphocyte", ...}

A nucleus' type is the majority of the type map under it. Without type maps every nucleus is
type 1 (``classes.json`` may still name it). Your own data: no licence or download is involved.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from synthaug.conditions import instance_types_from_type_map
from synthaug.data.io import IMAGE_SUFFIXES, index_files, read_label_image, read_rgb
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample
from synthaug.data.vocabulary import UNTYPED

_LABEL_SUFFIXES = (".npy", ".png", ".tif", ".tiff")
_SPECIAL_COLUMNS = ("name", "split", "group")


def _is_pair_folder(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "labels").is_dir()


@register_reader("folder")
class FolderReader(DatasetReader):
    """Images + label images/``.npy`` in plain folders, with optional metadata CSV and class names."""

    generic = True
    layout_hint = "[<split>/]images/ and [<split>/]labels/ (optional types/, metadata.csv, classes.json)"

    def __init__(self, root: str | Path, **kwargs):
        super().__init__(root, **kwargs)
        self.metadata = self._read_metadata()
        self.type_names = self._read_class_names()

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _is_pair_folder(root) or any(_is_pair_folder(d) for d in root.iterdir() if d.is_dir())

    def splits(self) -> list[str]:
        if not _is_pair_folder(self.root):
            return sorted(d.name for d in self.root.iterdir() if d.is_dir() and _is_pair_folder(d))
        splits = {row.get("split", "") for row in self.metadata.values()}
        return sorted(splits) if splits and "" not in splits else ["all"]

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        folder = self.root if _is_pair_folder(self.root) else self.root / split
        images = index_files(folder / "images", IMAGE_SUFFIXES)
        labels = index_files(folder / "labels", _LABEL_SUFFIXES)
        types = index_files(folder / "types", _LABEL_SUFFIXES) if (folder / "types").is_dir() else {}
        if folder == self.root and split != "all":
            unlisted = sorted(k for k in images if k not in self.metadata)
            if unlisted:
                raise ValueError(
                    f"{self.root / 'metadata.csv'} assigns splits but has no row for image(s) {unlisted[:5]}."
                )
            images = {k: v for k, v in images.items() if self.metadata[k].get("split") == split}
        samples = []
        for name, image_path in self._progress(images.items(), split, len(images)):
            if name not in labels:
                raise ValueError(f"{image_path}: no label file {name}.npy/.png/.tif in {folder / 'labels'}.")
            samples.append(self._load_one(name, image_path, labels[name], types.get(name)))
        return samples

    def _load_one(self, name: str, image_path: Path, label_path: Path, type_path: Path | None) -> Sample:
        image = read_rgb(image_path)
        label = read_label_image(label_path)
        type_map = None
        if label.ndim == 3 and label.shape[-1] == 2:
            label, type_map = label[..., 0], label[..., 1]
        elif label.ndim != 2:
            raise ValueError(
                f"{label_path}: expected (H, W) instance ids or (H, W, 2) ids + types, got {label.shape}."
            )
        if type_path is not None:
            type_map = read_label_image(type_path)
            if type_map.shape != label.shape:
                raise ValueError(
                    f"{type_path}: type map is {type_map.shape} but the instance mask is {label.shape}."
                )
        if label.shape != image.shape[:2]:
            raise ValueError(
                f"{label_path}: mask is {label.shape} but image {image_path.name} is {image.shape[:2]}."
            )
        table = None if type_map is None else instance_types_from_type_map(label, type_map)
        unnamed = sorted({t for t in (table or {}).values() if t not in self.type_names})
        if unnamed:
            raise ValueError(
                f"{type_path or label_path}: type id(s) {unnamed} have no name; list every class in "
                f'{self.root / "classes.json"} as {{"1": "name", ...}}.'
            )
        row = self.metadata.get(name, {})
        meta = {k: v for k, v in row.items() if k not in _SPECIAL_COLUMNS and v != ""}
        return build_sample(
            image,
            label,
            table,
            valid_types=self.type_names,
            meta=meta,
            name=name,
            group=row.get("group", ""),
            where=str(label_path),
            strict=self.strict,
        )

    def _read_metadata(self) -> dict[str, dict[str, str]]:
        path = self.root / "metadata.csv"
        if not path.is_file():
            return {}
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "name" not in rows[0]:
            raise ValueError(f"{path}: needs a `name` column holding each image's file stem.")
        return {row["name"]: row for row in rows}

    def _read_class_names(self) -> dict[int, str]:
        path = self.root / "classes.json"
        if not path.is_file():
            return dict(UNTYPED.names)
        try:
            names = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except (json.JSONDecodeError, ValueError, AttributeError) as err:
            raise ValueError(f'{path}: expected a JSON object {{"1": "class name", ...}} ({err}).') from err
        if not names or min(names) < 1:
            raise ValueError(
                f"{path}: class ids must be integers >= 1 (0 is background), got {sorted(names)}."
            )
        return names
