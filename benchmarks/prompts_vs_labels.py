"""Label-only vs image-derived prompts for a label-level generator (PCam tumour / normal patches).

Two MSDMs are trained on the same real patches with the same budget and seed; they differ only in
the text prompt each patch gets:

- label-only:     ``label: tumour tissue.``
- image-derived:  ``label: tumour tissue. morphology group: 3: dark haematoxylin, light eosin.``
                  (``MorphologyPrompter``: frozen EfficientNet-Lite0 + H&E stain features, k-means)

Each generator then samples as many images as there are real training patches' prompts drawn (so
prompts appear in their real proportions), and is scored against real held-out patches:

- fidelity with a named encoder: "FID (EfficientNet-Lite0 features)" (not Inception FID) and the
  coverage of the real embedding manifold (Naeem et al. 2020), from ``synthaug.metrics``;
- the AUC (sklearn ``roc_auc_score``) on real test patches of a logistic-regression classifier on
  frozen EfficientNet-Lite0 features trained on synthetic images only; the same classifier trained
  on the real training patches is the reference, as is the FID of real training vs real test patches;
- a PCA plot of real vs synthetic embeddings (PNG).

``--quick`` is a CPU smoke test (32 px, 200 patches, a tiny model, 200 steps): it runs the whole path
in minutes, and its numbers say nothing about what the method reaches. Full mode (96 px, the
"small" model, 20k steps) needs a GPU. Results (JSON + PNG) go to ``--out``.

Usage::

    python benchmarks/prompts_vs_labels.py --quick
    python benchmarks/prompts_vs_labels.py --data ../shared/data/pcam_ai4all_subset --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: every model ships locally

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import device_description, git_commit, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "pcam_ai4all_subset"
DEFAULT_OUT = REPO / "benchmarks" / "results"
SETTINGS = ("label-only", "image-derived")


@dataclass
class Budget:
    """Everything the two settings share; ``--quick`` and full mode differ only here."""

    size: int
    n_train_per_label: int
    n_test_per_label: int
    steps: int
    batch_size: int
    model_size: str
    n_synthetic: int
    num_inference_steps: int
    k: int
    k_range: tuple[int, int]


# k: 33 morphology groups as in the PCam study; fewer for the small quick subset. Silhouette (the
# --choose-k option) tends to favour k=2 on PCam embeddings, which would leave little to compare.
QUICK = Budget(32, 100, 50, 200, 8, "tiny", 100, 10, 6, (2, 12))
FULL = Budget(96, 1000, 250, 20_000, 32, "small", 2000, 25, 33, (2, 40))


def load_patches(data: Path, split: str, per_label: int, size: int, seed: int) -> list:
    """A label-balanced random subset of one PCam split, resized to ``size`` px (whole patch)."""
    from skimage.transform import resize

    from synthaug.data import Sample, open_dataset

    samples = open_dataset(data, reader="pcam").load(split)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({s.meta["label"] for s in samples}):
        pool = [s for s in samples if s.meta["label"] == label]
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), min(per_label, len(pool)), replace=False))]
    out = []
    for s in chosen:
        image = s.image
        if image.shape[:2] != (size, size):
            image = (
                resize(image, (size, size), anti_aliasing=True, preserve_range=True).round().astype(np.uint8)
            )
        empty = np.zeros((size, size), np.int32)
        # Only the label is kept as text: the comparison is label-only vs label + morphology group.
        meta = {"label": f"{s.meta['label']} tissue", "source": s.meta.get("source", "PCam")}
        out.append(Sample(image=image, inst=empty, types=empty.astype(np.uint8), meta=meta, name=s.name))
    return out


def jpeg_roundtrip(images: np.ndarray, quality: int = 75) -> np.ndarray:
    """The q75 JPEG round trip the real PCam patches went through (see the data README)."""
    from PIL import Image

    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out)


def train_setting(name: str, samples: list, budget: Budget, out: Path, seed: int) -> Path:
    from synthaug.model import TrainConfig, train_msdm

    config = TrainConfig(
        output_dir=out / name,
        resolution=budget.size,
        batch_size=budget.batch_size,
        steps=budget.steps,
        model_size=budget.model_size,
        seed=seed,
        lr_warmup_steps=min(100, budget.steps // 10),
        checkpoint_every=0,
        sample_every=0,
        text_max_length=64,  # label + group description exceed the default 32 tokens
        num_workers=0,
    )
    return train_msdm(config, samples)


def sample_setting(run_dir: Path, metas: list[dict], size: int, budget: Budget, seed: int) -> np.ndarray:
    """One image per prompt; the i-th image's noise is seeded the same way in both settings."""
    from tqdm.auto import tqdm

    from synthaug.sampling.pipeline import load_pipeline

    pipe = load_pipeline(run_dir)
    empty = np.zeros((size, size), np.int32)
    images = []
    batch = 50
    for start in tqdm(range(0, len(metas), batch), desc=f"sampling {run_dir.name}", leave=False):
        chunk = metas[start : start + batch]
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + start + i) for i in range(len(chunk))]
        # Label-level data: no spatial condition. mask guidance 0 uses exactly the mask-dropped
        # prediction, as in training; text at weight 1 (plain conditioning, no extra guidance copy).
        out = pipe(
            [empty] * len(chunk),
            meta=chunk,
            guidance={"mask": 0.0, "text": 1.0, "colour": 1.0},
            num_inference_steps=budget.num_inference_steps,
            generator=generators,
        )
        images.append(out.images)
    return np.concatenate(images)


def synthetic_only_auc(train_feats, train_labels, test_feats, test_labels, seed: int) -> float:
    """AUC on real test patches of a logistic regression on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train_labels)) < 2:
        return float("nan")  # a generator that produced only one class cannot train a classifier
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, random_state=seed))
    classifier.fit(train_feats, train_labels)
    positive = list(classifier.classes_).index("tumour tissue")
    return float(
        roc_auc_score(
            np.array(test_labels) == "tumour tissue", classifier.predict_proba(test_feats)[:, positive]
        )
    )


def plot_embeddings(
    path: Path, real: np.ndarray, real_labels, synth: dict, synth_labels: dict, title: str
) -> Path:
    """PCA (fitted on the real test embeddings) of real vs each setting's synthetic embeddings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(real)
    real_xy = pca.transform(real)
    fig, axes = plt.subplots(1, len(synth), figsize=(6 * len(synth), 5), sharex=True, sharey=True)
    markers = {"normal tissue": "o", "tumour tissue": "^"}
    for ax, (name, feats) in zip(np.atleast_1d(axes), synth.items()):
        xy = pca.transform(feats)
        for label, marker in markers.items():
            r = np.array(real_labels) == label
            s = np.array(synth_labels[name]) == label
            ax.scatter(*real_xy[r].T, s=8, c="0.6", marker=marker, label=f"real {label}", alpha=0.6)
            ax.scatter(
                *xy[s].T,
                s=8,
                c="tab:red" if "tumour" in label else "tab:blue",
                marker=marker,
                label=f"synthetic {label}",
                alpha=0.6,
            )
        ax.set_title(f"{name} prompts")
        ax.set_xlabel("PC 1 (of real)")
    np.atleast_1d(axes)[0].set_ylabel("PC 2 (of real)")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_image_grid(
    path: Path, rows: dict[str, np.ndarray], labels: dict[str, list[str]], n: int = 8
) -> Path:
    """The first ``n`` images of each row set (real and each setting), captioned by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n, 1.6 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(labels[name][c].split()[0], fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run :func:`run` in ``--work-dir`` or a temporary folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the pcam_ai4all_subset folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON and PNG go")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: 32 px, tiny model, 200 steps")
    parser.add_argument("--k", type=int, default=None, help="morphology groups (default: 6 quick, 33 full)")
    parser.add_argument("--choose-k", action="store_true", help="choose k by silhouette instead")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the runs and prompter here (default: temporary)"
    )
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        parser.error(f"--data {args.data} has no labels.csv; point it at pcam_ai4all_subset.")
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = dataclasses.replace(QUICK if args.quick else FULL)
    if args.steps:
        budget.steps = args.steps
    if args.work_dir is not None:
        return run(args, budget, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="prompts_vs_labels_") as work_dir:
        return run(args, budget, Path(work_dir))


def run(args: argparse.Namespace, budget: Budget, work_dir: Path) -> int:
    """Both settings end to end; JSON + PNG to ``args.out``, a table to stdout."""
    from synthaug.metrics.features import extract_features, load_feature_extractor
    from synthaug.metrics.fidelity import fidelity_from_features, metric_name
    from synthaug.model import metadata_to_text
    from synthaug.prompts import MorphologyPrompter

    mode = "quick (CPU smoke test, numbers not meaningful)" if args.quick else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "prompts_vs_labels" + ("_quick" if args.quick else "")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. Real patches (label-balanced, resized for the model), test patches held out.
    train = load_patches(args.data, "train", budget.n_train_per_label, budget.size, args.seed)
    test = load_patches(args.data, "test", budget.n_test_per_label, budget.size, args.seed + 1)
    train_images = np.stack([s.image for s in train])
    test_images = np.stack([s.image for s in test])
    train_labels = [s.meta["label"] for s in train]
    test_labels = [s.meta["label"] for s in test]

    # 2. Image-derived prompts: groups fitted on the training patches only (no masks in PCam).
    t0 = time.perf_counter()
    k = None if args.choose_k else (args.k or budget.k)
    prompter = MorphologyPrompter(k, k_range=budget.k_range, seed=args.seed)
    assignments = prompter.fit_transform(list(train_images), labels=[lab.split()[0] for lab in train_labels])
    prompter.save(work_dir / "prompter")
    timings["prompter fit (s)"] = time.perf_counter() - t0
    datasets = {
        "label-only": train,
        "image-derived": [
            dataclasses.replace(s, meta={**s.meta, **a.meta}) for s, a in zip(train, assignments)
        ],
    }

    # 3. Same budget, same seed, same prompt draws (real proportions) for both settings.
    draw = np.random.default_rng(args.seed).choice(
        len(train), budget.n_synthetic, replace=budget.n_synthetic > len(train)
    )
    synthetic, synth_labels, n_prompts = {}, {}, {}
    for name in SETTINGS:
        t0 = time.perf_counter()
        run_dir = train_setting(name, datasets[name], budget, work_dir, args.seed)
        timings[f"train {name} (s)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metas = [datasets[name][i].meta for i in draw]
        images = sample_setting(run_dir, metas, budget.size, budget, args.seed)
        # Real PCam went through q75 JPEG; at native size give the synthetic images the same trip.
        synthetic[name] = jpeg_roundtrip(images) if budget.size == 96 else images
        synth_labels[name] = [m["label"] for m in metas]
        n_prompts[name] = len({metadata_to_text(m) for m in metas})
        timings[f"sample {name} (s)"] = time.perf_counter() - t0

    # 4. Fidelity and synthetic-only classification, all with one named encoder.
    extractor = load_feature_extractor("efficientnet-lite0")
    encoder = extractor.display_name
    feats = {
        "real train": extract_features(train_images, extractor),
        "real test": extract_features(test_images, extractor),
    }
    feats.update({name: extract_features(images, extractor) for name, images in synthetic.items()})
    fid_key, cov_key = metric_name("FID", encoder), metric_name("coverage (Naeem k=5)", encoder)
    rows = {}
    for name, labels in [("real train (reference)", train_labels)] + [(n, synth_labels[n]) for n in SETTINGS]:
        key = "real train" if name.startswith("real") else name
        report = fidelity_from_features(feats["real test"], feats[key], encoder=encoder, seed=args.seed)
        report["AUC on real test (classifier trained on this set only)"] = synthetic_only_auc(
            feats[key], labels, feats["real test"], test_labels, args.seed
        )
        report["distinct prompts"] = n_prompts.get(key, "n/a (real)")
        rows[name] = report
    ratio = rows["image-derived"][fid_key] / rows["label-only"][fid_key]
    timings["total (s)"] = time.perf_counter() - started

    # 5. Report: PNG, JSON, table.
    png = plot_embeddings(
        args.out / f"{tag}_pca.png",
        feats["real test"],
        test_labels,
        {n: feats[n] for n in SETTINGS},
        synth_labels,
        f"PCA of {encoder} embeddings: real test patches (grey) vs synthetic, {mode}",
    )
    shuffle = np.random.default_rng(args.seed).permutation(len(test))  # test patches come label-sorted
    grid = save_image_grid(
        args.out / f"{tag}_samples.png",
        {"real test": test_images[shuffle], **synthetic},
        {"real test": [test_labels[i] for i in shuffle], **synth_labels},
    )
    result = {
        "benchmark": "prompts_vs_labels",
        "mode": mode,
        "data": str(args.data.resolve()),
        "device": device_description("cuda" if torch.cuda.is_available() else "cpu"),
        "commit": git_commit(),
        "budget": {**budget.__dict__, "seed": args.seed},
        "encoder": encoder,
        "prompter": {
            "k": prompter.k_,
            "selection": prompter.selection,
            "scores": prompter.scores_,
            "features": prompter.feature_names_,
            "descriptions": prompter.descriptions_,
            "group_label_counts": prompter.group_label_counts_,
        },
        "results": rows,
        "FID ratio image-derived / label-only": ratio,
        "timings": timings,
        "plots": [png.name, grid.name],
    }
    json_path = args.out / f"{tag}.json"
    write_json(json_path, result)
    auc_key = "AUC on real test (classifier trained on this set only)"
    print(f"\nprompts_vs_labels, {mode}; {result['device']}")
    print(f"encoder {encoder}; {budget.size} px; {budget.steps} steps; k = {prompter.k_}")
    print(f"| training set | prompts | {fid_key} | {cov_key} | AUC on real test |")
    print("|---|---|---|---|---|")
    for name, report in rows.items():
        print(
            f"| {name} | {report['distinct prompts']} | {report[fid_key]:.1f} | {report[cov_key]:.3f} | "
            f"{report[auc_key]:.3f} |"
        )
    print(f"FID ratio image-derived / label-only: {ratio:.3f}")
    print(f"wrote {json_path}, {png} and {grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
