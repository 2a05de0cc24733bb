"""Figures and the printed table of ``dice_with_synthesis.py`` (matplotlib ``Figure``s, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

BAR_METRICS = ("PQ", "mPQ", "F1_detection", "F1_other", "F1_inflammatory", "F1_epithelial", "F1_spindle")


def plot_scores(summary: Mapping, per_arm: Mapping, *, title: str):
    """Bars of PQ / mPQ / detection and per-type F1 per arm (mean), seeds as dots, std as error bars."""
    from matplotlib.figure import Figure

    metrics = [m for m in BAR_METRICS if any(m in row for row in summary.values())]
    arms = list(summary)
    fig = Figure(figsize=(max(9, 1.2 * len(metrics) * max(1, len(arms)) / 3), 4.6))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(arms))
    x = np.arange(len(metrics))
    # Fixed per arm so a figure with fewer arms keeps the colours; ablations are hatched greys.
    colours = {
        "real100": "#4c72b0",
        "real100+targeted": "#8fb3e0",
        "real10": "#dd8452",
        "real10+untargeted": "#f2c14e",
        "real10+targeted": "#c44e52",
        "real100-random-init": "#7f7f7f",
        "real10-random-init": "#c7c7c7",
        "real10+oversampled": "#8c564b",
    }
    for i, arm in enumerate(arms):
        offset = x + (i - (len(arms) - 1) / 2) * width
        means = [summary[arm].get(m, {}).get("mean", np.nan) for m in metrics]
        stds = [summary[arm].get(m, {}).get("std", 0.0) for m in metrics]
        n = summary[arm][metrics[0]]["n"]
        ax.bar(
            offset,
            np.nan_to_num(means),
            width,
            yerr=np.nan_to_num(stds),
            capsize=2,
            color=colours.get(arm, "#bcbd22"),
            hatch="//" if arm.endswith("-random-init") else None,
            edgecolor="white",
            label=f"{arm} (n={n})",
        )
        for j, m in enumerate(metrics):
            seeds = [r["metrics"].get(m, np.nan) for r in per_arm[arm]]
            ax.plot([offset[j]] * len(seeds), seeds, "k.", ms=2.5)
    ax.set_xticks(x, [m.replace("F1_", "F1 ") for m in metrics], rotation=15)
    ax.set_ylabel("CoNSeP test (mean, std over seeds; dots = seeds)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    return fig


def plot_predictions(sample, arms: Mapping[str, np.ndarray], type_names: Mapping[int, str]):
    """A test patch, its truth and each arm's seed-0 prediction, outlines coloured by type."""
    from matplotlib.figure import Figure

    from synthaug.viz import legend_handles, overlay_instances

    panels = [("image", sample.image), ("truth", overlay_instances(sample.image, sample.inst, sample.types))]
    panels += [(arm, overlay_instances(sample.image, pred[0], pred[1])) for arm, pred in arms.items()]
    fig = Figure(figsize=(2.6 * len(panels), 3.0))
    for i, (name, picture) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(picture)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{sample.name} - outlines coloured by type", fontsize=8)
    handles = legend_handles(type_names)
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=7)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def print_table(summary: Mapping, comparisons: Mapping) -> None:
    if not summary:
        print("no finished runs yet")
        return
    metrics = [m for m in next(iter(summary.values()))]
    print("\n| arm | n | " + " | ".join(metrics) + " |\n|" + "---|" * (len(metrics) + 2))
    for arm, row in summary.items():
        cells = []
        for m in metrics:
            std = row[m]["std"]  # None / NaN for one seed: no spread to show
            cell = f"{row[m]['mean']:.3f}" + (f" ± {std:.3f}" if std is not None and np.isfinite(std) else "")
            if arm in comparisons and m in comparisons[arm]:
                cell += f" ({comparisons[arm][m]['diff_mean']:+.3f})"
            cells.append(cell)
        print(f"| {arm} | {row[metrics[0]]['n']} | " + " | ".join(cells) + " |")
    print("(in brackets: mean paired difference to the arm's real-only twin over shared seeds)")
