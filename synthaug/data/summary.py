"""What is in a dataset: nuclei per class per split, nucleus sizes, and a montage with mask overlays.

Used by ``synthaug data inspect``. Plots are drawn on ``matplotlib.figure.Figure`` objects rather
than through pyplot, so they need no display and leave the user's pyplot backend and state alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from synthaug.data.record import Sample
from synthaug.data.splits import count_instances
from synthaug.viz import legend_handles, overlay_instances, type_colour


def count_table(
    samples_by_split: Mapping[str, Sequence[Sample]], type_names: Mapping[int, str]
) -> list[dict[str, int | str]]:
    """One row per split: samples, groups, nuclei and nuclei per class (image labels when no nuclei).

    Label-level datasets (``type_names`` empty, e.g. PCam) count samples per ``meta["label"]``.

    Returns:
        Rows as dicts with keys ``split``, ``samples``, ``groups``, ``nuclei`` and one per class.
    """
    rows = []
    for split, samples in samples_by_split.items():
        row: dict[str, int | str] = {
            "split": split,
            "samples": len(samples),
            "groups": len({s.group for s in samples}),
        }
        if type_names:
            counts = count_instances(samples)
            row["nuclei"] = sum(counts.values())
            row.update({name: counts.get(type_id, 0) for type_id, name in type_names.items()})
        else:
            labels = [s.meta.get("label", "") for s in samples]
            row.update({f"label {lab}": labels.count(lab) for lab in sorted(set(labels)) if lab})
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, int | str]]) -> str:
    """A Markdown table of :func:`count_table` rows (columns in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row.get(c, 0):,}" if isinstance(row.get(c, 0), int) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nucleus_areas(samples: Sequence[Sample]) -> dict[int, np.ndarray]:
    """Pixel areas of every nucleus, grouped by type id (one ``bincount`` per sample)."""
    areas: dict[int, list[np.ndarray]] = {}
    for sample in samples:
        sizes = np.bincount(sample.inst.ravel())
        for inst_id, type_id in sample.inst_types.items():
            areas.setdefault(type_id, []).append(sizes[inst_id : inst_id + 1])
    return {t: np.concatenate(a) for t, a in sorted(areas.items())}


def plot_size_histogram(
    samples_by_split: Mapping[str, Sequence[Sample]], type_names: Mapping[int, str], path: str | Path
) -> Path:
    """Write a PNG histogram of nucleus areas per class, one panel per split.

    Returns:
        The PNG path.
    """
    fig = Figure(figsize=(5 * len(samples_by_split), 3.5))
    axes = fig.subplots(1, len(samples_by_split), squeeze=False)
    for ax, (split, samples) in zip(axes[0], samples_by_split.items()):
        areas = nucleus_areas(samples)
        if areas:
            bins = np.linspace(0, np.percentile(np.concatenate(list(areas.values())), 99.5), 40)
            for type_id, values in areas.items():
                label = f"{type_names.get(type_id, type_id)} (n={values.size:,})"
                ax.hist(
                    values, bins=bins, histtype="step", linewidth=1.5, label=label, color=type_colour(type_id)
                )
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no nuclei annotated", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=f"{split}: nucleus area", xlabel="area (px)", ylabel="nuclei")
    fig.tight_layout()
    return _save(fig, path)


def plot_montage(
    samples: Sequence[Sample], type_names: Mapping[int, str], path: str | Path, *, columns: int = 4
) -> Path:
    """Write a PNG grid of samples with nucleus outlines coloured by type.

    Returns:
        The PNG path.

    Raises:
        ValueError: if ``samples`` is empty.
    """
    if not samples:
        raise ValueError("`samples` is empty; nothing to draw.")
    rows = -(-len(samples) // columns)
    fig = Figure(figsize=(3 * columns, 3.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, sample in zip(axes.ravel(), samples):
        # Untyped datasets (MoNuSeg, folders) draw every outline in one colour.
        ax.imshow(overlay_instances(sample.image, sample.inst, sample.types if type_names else None))
        title = sample.name if "label" not in sample.meta else f"{sample.name} ({sample.meta['label']})"
        ax.set_title(title, fontsize=8)
    handles = legend_handles(type_names)
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    fig.tight_layout(rect=(0, 0.04 if handles else 0, 1, 1))
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
