"""Scoring for ``prompts_vs_labels.py``: paired bootstrap KID, a small CNN classifier, bootstrap AUC, figures.

Kept apart from the protocol so each file reads in one sitting. Everything here works on arrays the
protocol has already produced (uint8 images, frozen-encoder features, 0/1 labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from _common import mean_std
from torch import nn
from tqdm.auto import tqdm


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (Binkowski et al. 2018): ``(x . y / d + 1) ** 3``, in float64."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased squared MMD from the three kernel blocks (diagonals of the within-set blocks left out)."""
    n, m = len(k_xx), len(k_yy)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def paired_kid_bootstrap(
    real: np.ndarray, sets: Mapping[str, np.ndarray], *, num_resamples: int = 200, seed: int = 0
) -> dict[str, np.ndarray]:
    """KID of each set against ``real`` on whole sets, and on ``num_resamples`` paired bootstrap resamples.

    Each resample draws the real rows and, for every set of the same length, the *same* set rows
    (row i of every synthetic set was drawn from the same prompt and the same noise seed), so the
    difference between two arms is judged against its own spread, not against the sum of two
    independent spreads. Kernels are computed once; resamples only gather.

    Returns:
        ``{name: array}``: element 0 is the whole-set KID, elements 1.. the resamples.
    """
    real = np.asarray(real, np.float64)
    rng = np.random.default_rng(seed)
    k_rr = _poly_kernel(real, real)
    blocks = {}
    for name, feats in sets.items():
        feats = np.asarray(feats, np.float64)
        blocks[name] = (_poly_kernel(feats, feats), _poly_kernel(real, feats))
    out = {name: [_mmd2(k_rr, k_ss, k_rs)] for name, (k_ss, k_rs) in blocks.items()}
    n = len(real)
    for _ in tqdm(range(num_resamples), desc="KID bootstrap", leave=False):
        r = rng.integers(0, n, n)
        draws: dict[int, np.ndarray] = {}
        for name, (k_ss, k_rs) in blocks.items():
            m = len(k_ss)
            s = draws.setdefault(m, rng.integers(0, m, m))
            out[name].append(_mmd2(k_rr[np.ix_(r, r)], k_ss[np.ix_(s, s)], k_rs[np.ix_(r, s)]))
    return {name: np.asarray(values) for name, values in out.items()}


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks and a linear head: a classifier that trains in a minute on a CPU."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 128)) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))[:, 0]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def train_classifier(
    images: np.ndarray, labels: np.ndarray, *, steps: int, batch_size: int = 32, seed: int = 0, desc: str = ""
) -> SmallCNN:
    """Train :class:`SmallCNN` on uint8 ``(N, H, W, 3)`` images and 0/1 labels for a fixed number of steps.

    Dihedral flips and rotations only (no colour jitter: colour is part of what the generators are
    judged on). Batches are drawn label-balanced, so a set with skewed labels trains the same way.
    """
    labels = np.asarray(labels, np.int64)
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError(f"`labels` must hold both classes 0 and 1, got {sorted(set(labels.tolist()))}.")
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    pools = [np.flatnonzero(labels == c) for c in (0, 1)]
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in tqdm(range(steps), desc=f"classifier {desc}".strip(), leave=False):
        idx = np.concatenate([rng.choice(pool, batch_size // 2) for pool in pools])
        x = _to_tensor(images[idx])
        k = int(rng.integers(4))
        x = torch.rot90(x, k, dims=(2, 3))
        if rng.random() < 0.5:
            x = x.flip(3)
        loss = loss_fn(model(x), torch.from_numpy(labels[idx]).float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model: SmallCNN, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Tumour probability per image, averaged over the 8 dihedral views (test-time augmentation)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = _to_tensor(images[start : start + batch_size])
        views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)]
        out.append(torch.stack([torch.sigmoid(model(v)) for v in views]).mean(0).numpy())
    return np.concatenate(out)


def bootstrap_auc(
    labels: np.ndarray, scores: np.ndarray, *, num_resamples: int = 1000, seed: int = 0
) -> dict[str, float]:
    """ROC AUC (sklearn) and its percentile 95 % CI over test-set bootstrap resamples."""
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels), np.asarray(scores)
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(num_resamples):
        idx = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[idx])) == 2:
            resampled.append(roc_auc_score(labels[idx], scores[idx]))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"AUC": float(roc_auc_score(labels, scores)), "CI low": float(low), "CI high": float(high)}


def plot_embeddings(
    path: Path, real: np.ndarray, real_labels, synth: dict, synth_labels: dict, title: str
) -> Path:
    """PCA (fitted on the real test embeddings) of real vs each arm's synthetic embeddings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(real)
    real_xy = pca.transform(real)
    fig, axes = plt.subplots(1, len(synth), figsize=(6 * len(synth), 5), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    markers = {"normal": "o", "tumour": "^"}
    for ax, (name, feats) in zip(axes, synth.items()):
        xy = pca.transform(feats)
        for label, marker in markers.items():
            r = np.array(real_labels) == label
            s = np.array(synth_labels[name]) == label
            ax.scatter(*real_xy[r].T, s=8, c="0.6", marker=marker, label=f"real {label}", alpha=0.6)
            colour = "tab:red" if label == "tumour" else "tab:blue"
            ax.scatter(*xy[s].T, s=8, c=colour, marker=marker, label=f"synthetic {label}", alpha=0.6)
        ax.set_title(f"{name} prompts")
        ax.set_xlabel("PC 1 (of real)")
    axes[0].set_ylabel("PC 2 (of real)")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def prompt_grid(
    path: Path,
    prompts: Sequence[str],
    real: Mapping[str, np.ndarray],
    synthetic: Mapping[str, np.ndarray],
    title: str,
    *,
    n_real: int = 3,
    n_synthetic: int = 5,
) -> Path:
    """One row per prompt: ``n_real`` real training patches with it, then ``n_synthetic`` painted tiles."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = n_real + n_synthetic
    fig, axes = plt.subplots(
        len(prompts), cols, figsize=(1.3 * cols + 3.2, 1.35 * len(prompts)), squeeze=False
    )
    for r, prompt in enumerate(prompts):
        real_row, synthetic_row = list(real[prompt][:n_real]), list(synthetic[prompt][:n_synthetic])
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            row, i = (real_row, c) if c < n_real else (synthetic_row, c - n_real)
            if i < len(row):
                ax.imshow(row[i])
            else:  # a prompt with fewer real patches (or draws) than columns
                ax.axis("off")
            if r == 0:
                ax.set_title("real" if c < n_real else "synthetic", fontsize=7)
        axes[r, 0].set_ylabel(
            "\n".join(textwrap.wrap(prompt, 34)), fontsize=5.5, rotation=0, ha="right", va="center"
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _label(meta: Mapping[str, str]) -> str:
    return meta["label"].split()[0]  # "tumour tissue" -> "tumour"


def _classifier_arm(images, labels, test_images, test_y, budget, name) -> dict:
    """Synthetic-only (or real) classifier: AUC on the real test split per seed, with its bootstrap CI."""
    y = (np.asarray(labels) == "tumour").astype(np.int64)
    runs = []
    for seed in range(budget.classifier_seeds):
        model = train_classifier(
            images, y, steps=budget.classifier_steps, seed=seed, desc=f"{name} seed {seed}"
        )
        runs.append({"seed": seed, **bootstrap_auc(test_y, predict_proba(model, test_images), seed=seed)})
    mean, std = mean_std([r["AUC"] for r in runs])
    return {"runs": runs, "AUC mean": mean, "AUC std": std, "train images": len(images)}


def score(*, args, budget, train, test, draw, synthetic, prompts, prompter_info) -> tuple[dict, dict]:
    """Fidelity, paired KID bootstrap, synthetic-only classifiers and figures for both arms."""
    from synthaug.metrics.features import extract_features, load_feature_extractor
    from synthaug.metrics.fidelity import fidelity_from_features, groups_from_labels, metric_name
    from synthaug.model import metadata_to_text

    arms = list(synthetic)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_images = np.stack([train[i].image for i in draw])  # the patches whose prompts were painted
    test_images = np.stack([s.image for s in test])
    test_labels = [_label(s.meta) for s in test]
    test_y = (np.asarray(test_labels) == "tumour").astype(np.int64)
    sets = {"real train": train_images, **synthetic}
    set_labels = {"real train": [_label(train[i].meta) for i in draw]}
    set_labels.update({arm: [_label(m) for m in prompts[arm]] for arm in arms})

    extractor = load_feature_extractor("efficientnet-lite0", device="cpu")
    encoder = extractor.display_name
    test_feats = extract_features(test_images, extractor)
    feats = {name: extract_features(images, extractor) for name, images in sets.items()}

    fidelity = {
        name: fidelity_from_features(
            test_feats,
            f,
            encoder=encoder,
            seed=args.seed,
            groups=groups_from_labels(test_labels, set_labels[name], prefix="label="),
        )
        for name, f in feats.items()
    }
    boot = paired_kid_bootstrap(test_feats, feats, seed=args.seed)
    kid = {name: {"KID": float(v[0]), "bootstrap std": float(v[1:].std(ddof=1))} for name, v in boot.items()}
    diff = boot[arms[1]] - boot[arms[0]]  # morphology - label-only, per paired resample
    gap = {
        "KID morphology - label-only": float(diff[0]),
        "bootstrap std": float(diff[1:].std(ddof=1)),
        "95% CI": [float(q) for q in np.percentile(diff[1:], [2.5, 97.5])],
        "share of resamples with morphology lower": float((diff[1:] < 0).mean()),
        "resamples": len(diff) - 1,
    }

    classifiers = {
        name: _classifier_arm(images, set_labels[name], test_images, test_y, budget, name)
        for name, images in sets.items()
    }

    pca = plot_embeddings(
        out / "coverage_pca.png",
        test_feats,
        test_labels,
        {a: feats[a] for a in arms},
        {a: set_labels[a] for a in arms},
        f"PCA of {encoder} embeddings: real PCam test patches (grey) vs each arm's synthetic tiles",
    )
    grids = []
    for arm in arms:
        texts = [metadata_to_text(m) for m in prompts[arm]]
        counts: dict[str, int] = {}
        for t in texts:
            counts[t] = counts.get(t, 0) + 1
        shown = sorted(counts, key=lambda t: (-counts[t], t))[:10]
        real_by, synth_by = {}, {}
        for t in shown:
            idx = [i for i, u in enumerate(texts) if u == t]
            real_by[t], synth_by[t] = train_images[idx], synthetic[arm][idx]
        grids.append(
            prompt_grid(
                out / f"grid_{arm}.png",
                sorted(shown),
                real_by,
                synth_by,
                f"{arm} prompts: real training patches with the prompt | tiles painted from it",
            )
        )

    fid_key, cov_key = metric_name("FID", encoder), metric_name("coverage (Naeem k=5)", encoder)
    prec_key, rec_key = (
        metric_name("precision (Kynkaanniemi k=5)", encoder),
        metric_name("recall (Kynkaanniemi k=5)", encoder),
    )
    k = prompter_info["k"]
    print(f"\nprompts_vs_labels on {len(test)} real PCam test patches; encoder {encoder}; k = {k}")
    print("| training set | KID (boot. std) | FID | precision | recall | coverage | AUC on real test |")
    print("|---|---|---|---|---|---|---|")
    for name in sets:
        f, c = fidelity[name], classifiers[name]
        print(
            f"| {name} | {kid[name]['KID']:.4f} ({kid[name]['bootstrap std']:.4f}) | {f[fid_key]:.1f} | "
            f"{f[prec_key]:.3f} | {f[rec_key]:.3f} | {f[cov_key]:.3f} | "
            f"{c['AUC mean']:.3f} +/- {c['AUC std']:.3f} ({len(c['runs'])} seeds) |"
        )
    print(
        f"KID morphology - label-only: {gap['KID morphology - label-only']:+.4f} "
        f"(paired bootstrap std {gap['bootstrap std']:.4f}, "
        f"95% CI {gap['95% CI'][0]:+.4f} .. {gap['95% CI'][1]:+.4f})"
    )

    result = {
        "encoder": encoder,
        "num_test": len(test),
        "num_synthetic_per_arm": len(draw),
        "prompter": prompter_info,
        "example prompts": {arm: sorted({metadata_to_text(m) for m in prompts[arm]})[:6] for arm in arms},
        "distinct prompts": {arm: len({metadata_to_text(m) for m in prompts[arm]}) for arm in arms},
        "fidelity": fidelity,
        "KID paired bootstrap": kid,
        "KID gap": gap,
        "classifiers": classifiers,
        "figures": [pca.name] + [g.name for g in grids],
    }
    summary = {
        "KID_label_only": kid[arms[0]]["KID"],
        "KID_morphology": kid[arms[1]]["KID"],
        "KID_spread": gap["bootstrap std"],
        "KID_floor": kid["real train"]["KID"],
        "AUC_label_only": classifiers[arms[0]]["AUC mean"],
        "AUC_morphology": classifiers[arms[1]]["AUC mean"],
        "AUC_real": classifiers["real train"]["AUC mean"],
        "num_groups": int(prompter_info["k"]),
    }
    return result, summary
