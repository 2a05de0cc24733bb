"""Pictures of image + mask pairs: type-coloured instance outlines, HV maps, grids.

numpy + scikit-image + matplotlib only, so every stage (data inspection, training grids, the demo,
benchmarks) draws masks the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from synthaug._validation import check_instance_mask

# One colour per CoNSeP-style type id (0 = background is never drawn); ids past the table cycle.
TYPE_COLOURS: dict[int, tuple[float, float, float]] = {
    1: (1.00, 0.85, 0.10),  # other: yellow
    2: (0.10, 0.90, 0.20),  # inflammatory: green
    3: (1.00, 0.10, 0.10),  # epithelial (columnar): red
    4: (0.10, 0.60, 1.00),  # spindle: blue
    5: (1.00, 0.40, 1.00),
    6: (0.20, 1.00, 1.00),
}


def type_colour(type_id: int) -> tuple[float, float, float]:
    """RGB in [0, 1] used for nuclei of ``type_id`` in every figure."""
    if type_id <= 0:
        return (1.0, 1.0, 1.0)
    keys = sorted(TYPE_COLOURS)
    return TYPE_COLOURS[keys[(type_id - 1) % len(keys)]]


def overlay_instances(image: np.ndarray, inst: np.ndarray, types: np.ndarray | None = None) -> np.ndarray:
    """Draw each nucleus outline on the image, coloured by its type.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        inst: ``(H, W)`` integer instance mask.
        types: optional ``(H, W)`` type map; without it every outline is yellow.

    Returns:
        ``(H, W, 3)`` uint8 RGB with 1-pixel inner outlines.
    """
    inst = check_instance_mask(inst, "inst")
    if image.shape[:2] != inst.shape:
        raise ValueError(f"`image` is {image.shape[:2]} but `inst` is {inst.shape}; they must match.")
    out = np.array(image, dtype=np.uint8, copy=True)
    edges = find_boundaries(inst, mode="inner") & (inst > 0)
    if types is None:
        out[edges] = (255, 217, 26)
        return out
    for type_id in np.unique(types[edges]):
        sel = edges & (types == type_id)
        out[sel] = (np.asarray(type_colour(int(type_id))) * 255).astype(np.uint8)
    return out


def legend_handles(type_names: Mapping[int, str]) -> list:
    """Matplotlib legend patches, one per named type."""
    from matplotlib.patches import Patch

    return [Patch(color=type_colour(k), label=f"{k} {v}") for k, v in sorted(type_names.items()) if k > 0]


def save_pair_grid(
    path: str | Path,
    images: Sequence[np.ndarray],
    insts: Sequence[np.ndarray],
    types: Sequence[np.ndarray] | None = None,
    *,
    hv_maps: Sequence[np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
    type_names: Mapping[int, str] | None = None,
    suptitle: str | None = None,
) -> Path:
    """Save a grid with one row per pair: image | outlines on image [| HV h | HV v].

    Args:
        path: PNG file to write.
        images, insts, types: the pairs (HWC uint8 images, instance and type maps).
        hv_maps: optional ``(2, H, W)`` HV maps per pair, drawn with a diverging colour map.
        titles: optional row titles.
        type_names: optional legend (type id -> name).
        suptitle: optional figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure  # not pyplot: a user's notebook backend stays as it is

    n = len(images)
    if n == 0:
        raise ValueError("`images` is empty; nothing to draw.")
    cols = 2 + (2 if hv_maps is not None else 0)
    fig = Figure(figsize=(2.4 * cols, 2.4 * n + (0.5 if suptitle else 0)))
    axes = fig.subplots(n, cols, squeeze=False)
    for row in range(n):
        t = None if types is None else types[row]
        panels = [(images[row], "image"), (overlay_instances(images[row], insts[row], t), "mask outlines")]
        for col, (panel, label) in enumerate(panels):
            axes[row, col].imshow(panel)
            axes[row, col].set_title(label if row == 0 else "", fontsize=8)
        if hv_maps is not None:
            for c, name in enumerate(("HV: h", "HV: v")):
                axes[row, 2 + c].imshow(hv_maps[row][c], cmap="coolwarm", vmin=-1, vmax=1)
                axes[row, 2 + c].set_title(name if row == 0 else "", fontsize=8)
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    if type_names:
        fig.legend(
            handles=legend_handles(type_names),
            loc="lower center",
            ncol=len(type_names),
            fontsize=8,
            frameon=False,
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if type_names else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
