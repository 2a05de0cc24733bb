"""MoNuSeg: multi-organ nucleus segmentation, 1000x1000 H&E tiles at 40x from TCGA, polygon outlines.

Published with the MICCAI 2018 challenge: https://monuseg.grand-challenge.org (Kumar et al., "A
Multi-Organ Nucleus Segmentation Challenge", IEEE TMI 39(5), 2020). Licence: CC BY-NC-SA 4.0. This
reader reads local files only.

Layout as unzipped: ``MoNuSeg 2018 Training Data/Tissue Images/<id>.tif`` with
``MoNuSeg 2018 Training Data/Annotations/<id>.xml``, and ``MoNuSegTestData/<id>.tif`` + ``<id>.xml``.
Each XML ``Region`` is one nucleus outline (``Vertices/Vertex`` with ``X``, ``Y`` in pixels),
filled with :func:`skimage.draw.polygon`; where outlines overlap, the later region wins. MoNuSeg
has no nucleus classes: every nucleus is type 1. The split is ``train``/``test`` from the top folder
name (``all`` when it says neither).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from synthaug.data.io import index_files, read_rgb
from synthaug.data.readers.base import DatasetReader, register_reader
from synthaug.data.record import Sample
from synthaug.data.validate import build_sample
from synthaug.data.vocabulary import UNTYPED

META = {"assay": "H&E", "source": "MoNuSeg"}


def polygons_to_instances(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a MoNuSeg XML annotation into an instance mask.

    Args:
        path: the ``.xml`` file.
        shape: ``(H, W)`` of its image.

    Returns:
        ``(H, W)`` int32 mask, one id per region (regions with no pixel inside the image vanish).

    Raises:
        ValueError: naming the file when it is not well-formed XML, has no regions or a vertex
            lacks numeric ``X``/``Y``.
    """
    path = Path(path)
    try:
        # Python's expat refuses entity-expansion bombs (3.7.1+), so parsing local files is safe.
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise ValueError(f"{path}: not well-formed XML ({err}).") from err
    regions = tree.getroot().findall(".//Region")
    if not regions:
        raise ValueError(
            f"{path}: no <Region> elements; expected MoNuSeg's Annotations/Regions/Region outlines."
        )
    inst = np.zeros(shape, np.int32)
    for label, region in enumerate(regions, start=1):
        try:
            xy = np.array([(float(v.attrib["X"]), float(v.attrib["Y"])) for v in region.iter("Vertex")])
        except (KeyError, ValueError) as err:
            raise ValueError(
                f"{path}: region {region.get('Id', label)} has a vertex without numeric X/Y."
            ) from err
        if len(xy) < 3:  # fewer than 3 vertices enclose no area
            continue
        rows, cols = polygon(xy[:, 1], xy[:, 0], shape=shape)
        inst[rows, cols] = label
    return inst


@register_reader("monuseg")
class MoNuSegReader(DatasetReader):
    """MoNuSeg tiles with XML outlines; a single type, 1 nucleus."""

    type_names = UNTYPED.names
    layout_hint = "<split folder>/**/<id>.tif with a matching <id>.xml annotation"

    @classmethod
    def detect(cls, root: Path) -> bool:
        xml = {p.stem for p in root.rglob("*.xml")}
        return bool(xml) and any(p.stem in xml for p in root.rglob("*.tif"))

    def splits(self) -> list[str]:
        return sorted({self._split_of(p) for p in self.root.rglob("*.xml")})

    def load(self, split: str) -> list[Sample]:
        self._check_split(split)
        images = index_files(self.root, (".tif", ".tiff"))
        annotations = [p for p in sorted(self.root.rglob("*.xml")) if self._split_of(p) == split]
        samples = []
        for path in self._progress(annotations, split, len(annotations)):
            if path.stem not in images:
                raise ValueError(f"{path}: no image {path.stem}.tif under {self.root}.")
            image = read_rgb(images[path.stem])
            inst = polygons_to_instances(path, image.shape[:2])
            samples.append(
                build_sample(
                    image, inst, None, valid_types=self.type_names, meta=META, name=path.stem, where=str(path)
                )
            )
        return samples

    def _split_of(self, path: Path) -> str:
        parts = path.relative_to(self.root).parts
        top = parts[0].lower() if len(parts) > 1 else ""
        return "train" if "train" in top else "test" if "test" in top else "all"
