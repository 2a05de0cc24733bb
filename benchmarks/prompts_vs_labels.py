"""Label-only vs image-derived prompts for a label-level generator (PCam tumour / normal patches).

Two MSDMs are trained on the same real patches with the same budget, seed and warm start; they
differ only in the text prompt each patch gets:

- label-only:     ``label: tumour tissue.``
- image-derived:  ``label: tumour tissue. morphology group: 3: dark haematoxylin, light eosin.``
                  (``MorphologyPrompter``: frozen EfficientNet-Lite0 + H&E stain features, k-means,
                  k chosen by BIC on the training patches)

Neither arm sees a mask (PCam has none) or a colour condition (colour dropout 1: the prompt is the
only thing that differs, and nothing else carries image statistics into the sampler). Each arm then
paints one tile per drawn training prompt (label-balanced; the same draws and noise seeds in both
arms) at PCam's native 96 px, and is scored on the real held-out test split:

- KID and FID (EfficientNet-Lite0 features, not Inception), precision / recall / density / coverage,
  and the sliced Wasserstein distance per label; the real-vs-real floor (real training patches, as
  many as synthetic ones) beside. KID's spread is a paired bootstrap (test rows and synthetic rows
  resampled together for both arms), so the gap is judged against its own spread;
- the synthetic-only classifier: a small CNN trained on each arm's synthetic tiles only (same steps,
  3 seeds), and one trained on as many real training patches; AUC on the real test split with a
  bootstrap 95 % CI;
- a PCA figure of real vs each arm and a grid per arm, one row per prompt.

Every stage writes into ``--work-dir`` and is skipped when its output is there, so a killed or
time-budgeted run resumes with the same command. ``--quick`` is a smoke test of the whole path
(32 px, tiny model from scratch, minutes on a CPU); its numbers say nothing about the method.

Usage::

    python benchmarks/prompts_vs_labels.py --quick
    python benchmarks/prompts_vs_labels.py --work-dir /work/runs/pcam --minutes 70
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: every model ships locally

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import device_description, git_commit, write_json  # noqa: E402
from _pcam_eval import score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "pcam_ai4all_subset"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "prompts_vs_labels"
ARMS = ("label-only", "morphology")
LABELS = ("normal", "tumour")


@dataclass
class Budget:
    """Everything the two arms share; ``--quick`` and the full protocol differ only here."""

    size: int  # tiles are sampled and scored at this size (96 = PCam's own)
    crop: int  # training crop (random crops of the size-px patch; sampled fully convolutionally)
    n_train_per_label: int
    n_test_per_label: int
    steps: int
    batch_size: int
    learning_rate: float
    model_size: str
    init_from: str | None  # both arms warm-start from the same weights (an H&E prior, as SD is in the paper)
    n_synthetic: int  # per arm, label-balanced
    num_inference_steps: int
    k: int | None  # None: chosen over k_range by `selection`
    k_range: tuple[int, int]
    selection: str  # "bic" (diagonal GMM): silhouette falls monotonically on PCam and picks k=2
    classifier_steps: int
    classifier_seeds: int


QUICK = Budget(32, 32, 100, 50, 200, 8, 5e-4, "tiny", None, 100, 10, 6, (2, 12), "bic", 100, 1)
FULL = Budget(96, 64, 1000, 250, 800, 16, 2e-4, "cpu", "consep", 400, 15, None, (2, 40), "bic", 200, 3)


def load_patches(data: Path, split: str, per_label: int, size: int, seed: int) -> list:
    """A label-balanced random subset of one PCam split (resized only when ``size`` is not 96)."""
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
        meta = {"label": f"{s.meta['label']} tissue", "source": "PCam"}
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


def fit_prompts(train: list, budget: Budget, work: Path, seed: int) -> tuple[list[dict], dict]:
    """Morphology-group metadata per training patch (fitted once, then read back from ``work``)."""
    from synthaug.prompts import MorphologyPrompter

    path = work / "morphology_prompts.json"
    if path.is_file():
        record = json.loads(path.read_text())
        same_k = budget.k in (None, record["prompter"]["k"]) and record["prompter"]["selection"] in (
            "given",
            budget.selection,
        )
        if record["names"] == [s.name for s in train] and same_k:
            return record["metas"], record["prompter"]
    prompter = MorphologyPrompter(budget.k, k_range=budget.k_range, selection=budget.selection, seed=seed)
    assignments = prompter.fit_transform(
        [s.image for s in train], labels=[s.meta["label"].split()[0] for s in train]
    )
    prompter.save(work / "prompter")
    info = {
        "k": prompter.k_,
        "selection": "given" if budget.k else prompter.selection,
        "k_range": list(budget.k_range),
        "scores": prompter.scores_,
        "features": list(prompter.feature_names_),
        "descriptions": prompter.descriptions_,
        "group_label_counts": prompter.group_label_counts_,
    }
    metas = [{**s.meta, **a.meta} for s, a in zip(train, assignments)]
    write_json(path, {"names": [s.name for s in train], "metas": metas, "prompter": info})
    return metas, info


def train_arm(name: str, samples: list, budget: Budget, work: Path, seed: int, minutes: float | None) -> bool:
    """Train (or resume) one arm; ``True`` once it has reached ``budget.steps``."""
    from synthaug.model import TrainConfig, train_msdm

    out = work / name
    summary = out / "training_summary.json"
    if summary.is_file() and json.loads(summary.read_text())["steps"] >= budget.steps:
        return True
    config = TrainConfig(
        output_dir=out,
        resolution=budget.crop,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        steps=budget.steps,
        model_size=budget.model_size,
        init_from=budget.init_from,
        seed=seed,
        # No colour condition in either arm: the prompt is the only difference, and nothing else
        # hands the sampler a real patch's statistics. Masks are null anyway (label-level data).
        condition_dropout={"mask": 0.1, "text": 0.1, "colour": 1.0},
        mixed_precision="no",
        lr_warmup_steps=min(100, budget.steps // 10),
        checkpoint_every=100,
        export_every=0,
        sample_every=0,
        text_max_length=64,  # label + group description exceed the default 32 tokens
        resume=True,
        time_budget_minutes=minutes,
    )
    train_msdm(config, samples)
    return json.loads(summary.read_text())["steps"] >= budget.steps


def sample_arm(name: str, metas: list[dict], budget: Budget, work: Path, seed: int) -> np.ndarray:
    """One tile per drawn prompt, in resumable chunks; tile i's noise is seeded the same in both arms."""
    from tqdm.auto import tqdm

    from synthaug.sampling.pipeline import load_pipeline

    folder = work / "samples" / name
    folder.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(work / name, device="cpu")
    empty = np.zeros((budget.size, budget.size), np.int32)
    chunk_size = 25
    chunks = []
    for start in tqdm(range(0, len(metas), chunk_size), desc=f"sampling {name}"):
        path = folder / f"{start:05d}.npy"
        if not path.is_file():
            chunk = metas[start : start + chunk_size]
            generators = [
                torch.Generator().manual_seed(seed * 1_000_003 + start + i) for i in range(len(chunk))
            ]
            # Label-level: mask weight 0 is the mask-dropped prediction (as trained), text plain.
            images = pipe(
                [empty] * len(chunk),
                meta=chunk,
                guidance={"mask": 0.0},
                num_inference_steps=budget.num_inference_steps,
                generator=generators,
            ).images
            np.save(path.with_suffix(".tmp.npy"), images)  # plain uint8 .npy: no pickle
            path.with_suffix(".tmp.npy").replace(path)  # a killed run leaves no half chunk
        chunks.append(np.load(path, allow_pickle=False))
    images = np.concatenate(chunks)
    # Real PCam went through q75 JPEG; at native size the synthetic tiles get the same trip.
    return jpeg_roundtrip(images) if budget.size == 96 else images


def balanced_draw(train: list, n: int, seed: int) -> np.ndarray:
    """``n`` training indices, half per label, without replacement (the prompts both arms paint)."""
    rng = np.random.default_rng(seed)
    labels = np.array([s.meta["label"].split()[0] for s in train])
    return np.concatenate(
        [np.sort(rng.choice(np.flatnonzero(labels == lab), n // 2, replace=False)) for lab in LABELS]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run :func:`run` in ``--work-dir`` (or a temporary folder for ``--quick``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the pcam_ai4all_subset folder")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default benchmarks/results/...)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 32 px, tiny model, 200 steps")
    parser.add_argument(
        "--k", type=int, default=None, help="morphology groups (default: chosen by BIC)"
    )
    parser.add_argument("--steps", type=int, default=None, help="override the training steps of both arms")
    parser.add_argument(
        "--minutes", type=float, default=None, help="stop training after this long; resume later"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    parser.add_argument("--work-dir", type=Path, default=None, help="runs, prompter and samples (resumable)")
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        parser.error(f"--data {args.data} has no labels.csv; point it at pcam_ai4all_subset.")
    if args.work_dir is None and not args.quick:
        parser.error("the full protocol takes hours: pass --work-dir DIR so it can resume.")
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = dataclasses.replace(QUICK if args.quick else FULL)
    if args.steps:
        budget.steps = args.steps
    if args.k:
        budget.k = args.k
    args.out = args.out or (DEFAULT_OUT.parent / "quick" / "prompts_vs_labels" if args.quick else DEFAULT_OUT)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return run(args, budget, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="prompts_vs_labels_") as work_dir:
        return run(args, budget, Path(work_dir))


def run(args: argparse.Namespace, budget: Budget, work: Path) -> int:
    """The protocol end to end; JSON + PNG to ``args.out``, a table to stdout."""
    started = time.perf_counter()
    train = load_patches(args.data, "train", budget.n_train_per_label, budget.size, args.seed)
    test = load_patches(args.data, "test", budget.n_test_per_label, budget.size, args.seed + 1)
    morphology_metas, prompter_info = fit_prompts(train, budget, work, args.seed)
    datasets = {
        "label-only": train,
        "morphology": [dataclasses.replace(s, meta=m) for s, m in zip(train, morphology_metas)],
    }
    for name in ARMS:
        if not train_arm(name, datasets[name], budget, work, args.seed, args.minutes):
            print(
                f"{name} stopped before {budget.steps} steps (time budget); run the same command to resume."
            )
            return 3
    draw = balanced_draw(train, budget.n_synthetic, args.seed)
    synthetic = {
        name: sample_arm(name, [datasets[name][i].meta for i in draw], budget, work, args.seed)
        for name in ARMS
    }
    train_summaries = {name: json.loads((work / name / "training_summary.json").read_text()) for name in ARMS}
    result, summary = score(
        args=args,
        budget=budget,
        train=train,
        test=test,
        draw=draw,
        synthetic=synthetic,
        prompts={name: [datasets[name][i].meta for i in draw] for name in ARMS},
        prompter_info=prompter_info,
    )
    result.update(
        {
            "benchmark": "prompts_vs_labels",
            "mode": "quick (smoke test, numbers not meaningful)" if args.quick else "full",
            "data": "pcam_ai4all_subset (PatchCamelyon, CC0): train split to train, test split to score",
            "device": device_description("cpu"),
            "date": time.strftime("%Y-%m-%d"),
            "commit": git_commit(),
            "budget": {**dataclasses.asdict(budget), "seed": args.seed},
            "training": {
                name: {
                    k: s[k]
                    for k in ("steps", "warm_start_steps", "final_loss", "parameters", "seconds_this_session")
                }
                for name, s in train_summaries.items()
            },
            "seconds this invocation": time.perf_counter() - started,
        }
    )
    write_json(args.out / "prompts_vs_labels.json", result)
    write_json(args.out / "summary.json", summary)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
