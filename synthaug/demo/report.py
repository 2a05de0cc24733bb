"""The demo's figures (loss curves, score bars) and its self-contained ``report.html``."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # not pyplot: the caller's backend and pyplot state stay as they are


def save_loss_curves(
    path: Path, curves: Mapping[str, Sequence[float]], *, title: str, smooth: int = 10
) -> Path:
    """Plot raw (faint) and moving-average (solid) loss per run on one axis."""
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.subplots()
    for name, values in curves.items():
        y = np.asarray(values, dtype=float)
        if y.size == 0:
            continue
        (line,) = ax.plot(y, alpha=0.25, linewidth=0.8)
        k = max(1, min(smooth, y.size))
        ax.plot(
            np.arange(k - 1, y.size),
            np.convolve(y, np.ones(k) / k, mode="valid"),
            color=line.get_color(),
            label=name,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def save_score_bars(path: Path, scores: Mapping[str, Mapping[str, float]], *, title: str) -> Path:
    """Grouped bars: one group per metric, one bar per run, value printed on top."""
    runs = list(scores)
    classes = list(next(iter(scores.values())))
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(runs))
    fig = Figure(figsize=(1.3 * len(classes) + 2.5, 3.4))
    ax = fig.subplots()
    for i, run in enumerate(runs):
        vals = [scores[run].get(c, np.nan) for c in classes]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=run)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, [c.replace("_", " ") for c in classes], fontsize=7, rotation=20)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(runs), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_report(
    out_dir: Path,
    *,
    title: str,
    notes: Sequence[str],
    figures: Sequence[tuple[str, str, str]],
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
    settings: Mapping[str, Any],
) -> Path:
    """Write ``report.html`` (its figures are referenced beside it, not embedded); returns its path.

    Args:
        out_dir: folder holding the PNGs; the report is written there.
        title: page title.
        notes: paragraphs shown first (e.g. which parts ran on toy data).
        figures: ``(heading, png file name, caption)`` triples.
        tables: ``(heading, column names, rows)``.
        settings: the exact settings of the run, shown and saved as JSON.
    """
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
        "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        ".note{background:#fff6d5;padding:.6em 1em;border-left:4px solid #e0b000}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    parts += [f"<p class='note'>{esc(n)}</p>" for n in notes]
    for heading, columns, rows in tables:
        parts.append(f"<h2>{esc(heading)}</h2><table><tr>")
        parts += [f"<th>{esc(str(c))}</th>" for c in columns]
        parts.append("</tr>")
        for row in rows:
            cells = "".join(f"<td>{esc(f'{v:.3f}' if isinstance(v, float) else str(v))}</td>" for v in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    for heading, png, caption in figures:
        parts.append(
            f"<h2>{esc(heading)}</h2><img src='{esc(png)}' alt='{esc(heading)}'><p>{esc(caption)}</p>"
        )
    parts.append("<h2>Settings</h2><pre>" + esc(json.dumps(settings, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    path = Path(out_dir) / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
