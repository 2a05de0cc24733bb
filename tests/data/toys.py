"""Writers of tiny datasets in each reader's on-disk format, for the reader tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat
from skimage.draw import disk


def toy_tile(seed: int, size: int = 48, n: int = 6, num_types: int = 4):
    """A random tile: ``image`` (dark nuclei on pink), ``inst`` (ids 1..K) and ``table`` id -> type."""
    rng = np.random.default_rng(seed)
    inst = np.zeros((size, size), np.int32)
    for i in range(1, n + 1):
        rr, cc = disk(tuple(rng.integers(4, size - 4, 2)), rng.integers(3, 6), shape=inst.shape)
        inst[rr, cc] = i
    ids = np.unique(inst[inst > 0])
    inst = np.searchsorted(np.concatenate([[0], ids]), inst).astype(np.int32)  # ids 1..K after overlaps
    table = {k: int(rng.integers(1, num_types + 1)) for k in range(1, ids.size + 1)}
    image = np.full((size, size, 3), (230, 180, 210), np.uint8)
    image[inst > 0] = (90, 40, 130)
    image = np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    return image, inst, table


def type_map(inst: np.ndarray, table: dict[int, int]) -> np.ndarray:
    lut = np.zeros(inst.max() + 1, np.uint8)
    for k, t in table.items():
        lut[k] = t
    return lut[inst]


def write_png(path: Path, image: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image)
    (img.convert(mode) if mode else img).save(path)
    return path


def save_mat(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, content)


def write_consep_original(root: Path, tiles: dict[str, int]) -> dict[str, tuple]:
    """Original release: RGBA PNG + .mat with 7 classes and float64 inst_map; returns name -> tile."""
    written = {}
    for split, n in tiles.items():
        folder = root / split.capitalize()
        for i in range(1, n + 1):
            image, inst, table = toy_tile(i + 10 * (split == "test"), num_types=7)
            name = f"{split}_{i}"
            write_png(folder / "Images" / f"{name}.png", image, mode="RGBA")
            inst_type = np.array([[table[k]] for k in range(1, inst.max() + 1)], np.float64)
            save_mat(
                folder / "Labels" / f"{name}.mat",
                {
                    "inst_map": inst.astype(np.float64),
                    "type_map": type_map(inst, table),
                    "inst_type": inst_type,
                    "inst_centroid": np.zeros((inst.max(), 2)),
                },
            )
            written[name] = (image, inst, table)
    return written


def write_consep_patches(
    root: Path, tiles: dict[str, int], grid: int = 2, patch: int = 24
) -> dict[str, tuple]:
    """The patch layout: each tile cut into grid x grid patches, patches.csv, inst_uid; returns tiles."""
    rows, written = [], {}
    for split, n in tiles.items():
        folder = root / split.capitalize()
        for t in range(1, n + 1):
            tile = f"{split}_{t}"
            image, inst, table = toy_tile(100 + t + 50 * (split == "test"), size=grid * patch, n=10)
            written[tile] = (image, inst, table)
            for p in range(grid * grid):
                r, c = divmod(p, grid)
                sl = np.s_[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch]
                uids = np.unique(inst[sl][inst[sl] > 0])
                local = np.searchsorted(np.concatenate([[0], uids]), inst[sl]).astype(np.int32)
                name = f"{tile}_{p:03d}"
                write_png(folder / "Images" / f"{name}.png", image[sl])
                save_mat(
                    folder / "Labels" / f"{name}.mat",
                    {
                        "inst_map": local,
                        "type_map": type_map(local, {i + 1: table[u] for i, u in enumerate(uids)}),
                        "inst_type": np.array([[table[u]] for u in uids], np.int32).reshape(-1, 1),
                        "inst_centroid": np.zeros((uids.size, 2)),
                        "inst_uid": uids.reshape(-1, 1).astype(np.int32),
                    },
                )
                rows.append(
                    {"split": split, "name": name, "tile": tile, "patch": p, "grid_row": r, "grid_col": c}
                )
    with open(root / "patches.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return written


def write_pannuke(root: Path, n: int = 3, fold: int = 1, size: int = 32) -> list[tuple]:
    """PanNuke fold: float64 images, per-type instance channels with ids repeating across channels."""
    images, masks, written = [], [], []
    for i in range(n):
        image, inst, table = toy_tile(200 + i, size=size, num_types=5)
        mask = np.zeros((size, size, 6), np.float64)
        for k, t in table.items():
            same_type = [j for j, tt in sorted(table.items()) if tt == t]
            mask[..., t - 1][inst == k] = same_type.index(k) + 1  # ids restart in every channel
        mask[..., 5] = inst == 0
        images.append(image.astype(np.float64))
        masks.append(mask)
        written.append((image, inst, table))
    img_dir = root / f"Fold {fold}" / "images" / f"fold{fold}"
    mask_dir = root / f"Fold {fold}" / "masks" / f"fold{fold}"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    np.save(img_dir / "images.npy", np.stack(images))
    np.save(img_dir / "types.npy", np.array(["Colon", "Adrenal_gland", "Breast"][:n]))
    np.save(mask_dir / "masks.npy", np.stack(masks))
    return written


def write_conic(root: Path, n: int = 3, size: int = 32) -> list[tuple]:
    written, images, labels = [], [], []
    for i in range(n):
        image, inst, table = toy_tile(300 + i, size=size, num_types=6)
        images.append(image)
        labels.append(np.stack([inst, type_map(inst, table)], -1).astype(np.int32))
        written.append((image, inst, table))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "images.npy", np.stack(images))
    np.save(root / "labels.npy", np.stack(labels))
    names = ["consep_1-0000", "consep_1-0001", "crag_2-0000"][:n]
    (root / "patch_info.csv").write_text("patch_info\n" + "\n".join(names) + "\n")
    return written


def write_lizard(root: Path) -> dict[str, tuple]:
    written = {}
    for i, name in enumerate(["consep_1", "glas_3"]):
        image, inst, table = toy_tile(400 + i, num_types=6)
        inst = np.where(inst > 0, inst * 10, 0)  # Lizard ids need not be contiguous
        table = {k * 10: t for k, t in table.items()}
        write_png(root / f"Lizard_Images{i + 1}" / f"{name}.png", image)
        ids = np.array(sorted(table)).reshape(-1, 1)
        (root / "Lizard_Labels" / "Labels").mkdir(parents=True, exist_ok=True)
        savemat(
            root / "Lizard_Labels" / "Labels" / f"{name}.mat",
            {
                "inst_map": inst.astype(np.int32),
                "id": ids,
                "class": np.array([[table[k]] for k in ids.ravel()]),
            },
        )
        written[name] = (image, inst, table)
    (root / "Lizard_Labels" / "info.csv").write_text(
        "Filename,Source,Split\nconsep_1,consep,1\nglas_3,glas,2\n"
    )
    return written


def monuseg_xml(inst: np.ndarray) -> str:
    """One polygon per instance (its bounding box, inclusive corners), in MoNuSeg's XML layout."""
    regions = []
    for k in range(1, inst.max() + 1):
        rr, cc = np.nonzero(inst == k)
        y0, y1, x0, x1 = rr.min(), rr.max(), cc.min(), cc.max()
        verts = "".join(
            f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        )
        regions.append(f'<Region Id="{k}"><Vertices>{verts}</Vertices></Region>')
    return f"<Annotations><Annotation Id='1'><Regions>{''.join(regions)}</Regions></Annotation></Annotations>"


def write_monuseg(root: Path) -> dict[str, np.ndarray]:
    written = {}
    places = {
        "TCGA-A": (
            root / "MoNuSeg 2018 Training Data" / "Tissue Images",
            root / "MoNuSeg 2018 Training Data" / "Annotations",
        ),
        "TCGA-B": (root / "MoNuSegTestData", root / "MoNuSegTestData"),
    }
    for i, (name, (img_dir, xml_dir)) in enumerate(places.items()):
        image, _, _ = toy_tile(500 + i)
        inst = np.zeros(image.shape[:2], np.int32)
        inst[4:10, 5:12], inst[20:30, 20:26], inst[35:40, 2:9] = 1, 2, 3
        img_dir.mkdir(parents=True, exist_ok=True)
        xml_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(img_dir / f"{name}.tif")
        (xml_dir / f"{name}.xml").write_text(monuseg_xml(inst))
        written[name] = inst
    return written


def write_folder(root: Path, *, with_types: bool = True) -> dict[str, tuple]:
    written = {}
    rows = []
    for i, split in enumerate(["train", "train", "test"]):
        image, inst, table = toy_tile(600 + i, num_types=2)
        name = f"img{i}"
        write_png(root / "images" / f"{name}.jpg", image)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        if with_types:
            np.save(root / "labels" / f"{name}.npy", np.stack([inst, type_map(inst, table)], -1))
        else:
            write_png(root / "labels" / f"{name}.png", inst.astype(np.uint16))
        rows.append(f"{name},{split},slide{i // 2},kidney")
        written[name] = (image, inst, table)
    (root / "metadata.csv").write_text("name,split,group,tissue\n" + "\n".join(rows) + "\n")
    (root / "classes.json").write_text(json.dumps({"1": "tumour", "2": "lymphocyte"}))
    return written


def write_pcam(root: Path) -> None:
    rows = ["file,label,split"]
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        for i in range(n):
            label = i % 2
            rel = f"images/{split}/{label}/patch{i:07d}.jpg"
            write_png(root / rel, toy_tile(700 + i, size=24)[0])
            rows.append(f"{rel},{label},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
