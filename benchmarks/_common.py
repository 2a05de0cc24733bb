"""Helpers shared by the proof benchmarks: data, toy caches, a segmenter run, evaluation, statistics.

Benchmarks are scripts, not library code: they may seed globally (``monai.utils.set_determinism``)
and print. Everything they measure goes through ``synthaug.metrics``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from synthaug.data import NucleiDataset, Sample
from synthaug.metrics.segmentation import aggregated_jaccard_index, conic_pq, dice_per_class

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("monai-basicunet", "smp-unet")


def device_description(device: str) -> str:
    """A line naming the hardware, e.g. ``"2-core x86_64 CPU"`` or the CUDA device name."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    import os

    return f"{os.cpu_count()}-core {platform.machine()} CPU ({torch.get_num_threads()} torch thread(s))"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NaN is not JSON: a class absent from every image is written as null.
    path.write_text(json.dumps(_jsonable(record), indent=1, allow_nan=False))
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----------------------------------------------------------------------------------------- toy caches
def build_toy_cache(url: str, *, num_samples: int, size: int, seed: int = 0, num_types: int = 4):
    """A cache of procedural layouts painted by the toy renderer: a smoke-test stand-in for MSDM output."""
    from synthaug.data import generate_layout, render_toy_tile
    from synthaug.sampling.cache import SyntheticCache

    cache = SyntheticCache.create(
        url,
        height=size,
        width=size,
        num_types=num_types,
        attrs={"source": "toy layouts + render_toy_tile (smoke test, not MSDM)"},
    )
    for i in tqdm(range(num_samples), desc="toy cache", leave=False):
        layout = generate_layout(size, size, seed=seed + i)
        image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=seed + i)
        cache.append(
            image=image[None],
            inst=layout.inst[None],
            type=layout.types[None],
            meta=[{"source": "toy", "seed": seed + i}],
        )
    return cache


# ----------------------------------------------------------------------------------------- training
def build_segmenter(arch: str, num_classes: int) -> torch.nn.Module:
    """The segmentation network: SMP ``Unet`` (ResNet-18, random init) or a small MONAI ``BasicUNet``."""
    if arch == "smp-unet":
        import segmentation_models_pytorch as smp

        return smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=num_classes)
    if arch == "monai-basicunet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(
            spatial_dims=2, in_channels=3, out_channels=num_classes, features=(16, 16, 32, 64, 128, 16)
        )
    raise ValueError(f"`arch` must be one of {list(ARCHS)}, got {arch!r}.")


def geometric_augmentations(keys: Sequence[str] = ("image", "label")) -> list[Callable]:
    """The augmentations every arm shares (flips and 90-degree turns; image and label drawn together)."""
    from monai.transforms import RandFlipd, RandRotate90d

    return [
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        RandRotate90d(keys=keys, prob=0.5),
    ]


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "image": torch.as_tensor(np.stack([np.asarray(i["image"], np.float32) for i in items])),
        "label": torch.as_tensor(np.stack([np.asarray(i["label"], np.int64) for i in items])),
        "is_synthetic": torch.as_tensor([bool(i.get("is_synthetic", False)) for i in items]),
    }


def train_and_predict(
    train: Sequence[Sample],
    test: Sequence[Sample],
    *,
    arch: str,
    num_classes: int,
    steps: int,
    batch_size: int,
    seed: int,
    device: str,
    synthetic: Callable | None = None,
    lr: float = 3e-3,
    desc: str = "train",
) -> tuple[list[np.ndarray], float]:
    """Train one segmenter and predict the test type maps.

    Every arm gets the same network, seed, optimiser, step budget and geometric augmentations;
    ``synthetic`` (a ``SyntheticAugment``) is put in front of them when given.

    Returns:
        ``(predictions, synthetic_fraction)``: ``(H, W)`` class maps per test sample, and the share
        of training draws that came from the cache.
    """
    from monai.losses import DiceCELoss
    from monai.transforms import Compose
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    transform = Compose(([synthetic] if synthetic is not None else []) + geometric_augmentations())
    transform.set_random_state(seed)
    dataset = NucleiDataset(list(train), transform=transform)
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=steps * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_collate)
    model = build_segmenter(arch, num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    drawn_synthetic = 0
    model.train()
    for batch in tqdm(loader, total=steps, desc=desc, unit="step", leave=False):
        loss = loss_fn(model(batch["image"].to(device)), batch["label"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        drawn_synthetic += int(batch["is_synthetic"].sum())
    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(test), 16):
            chunk = [s.to_dict()["image"] for s in test[start : start + 16]]
            logits = model(torch.as_tensor(np.stack(chunk)).to(device))
            predictions.extend(logits.argmax(1).cpu().numpy().astype(np.int32))
    set_determinism(seed=None)
    return predictions, drawn_synthetic / (steps * batch_size)


# ----------------------------------------------------------------------------------------- evaluation
def instances_from_types(type_map: np.ndarray) -> np.ndarray:
    """Instances of a predicted type map: 4-connected components of its foreground.

    A semantic network cannot separate touching nuclei, so touching predictions merge into one
    instance; this lowers PQ/AJI for every arm alike (the comparison stays fair, absolute PQ is
    below what an HV-map network such as HoVer-Net reaches).
    """
    from skimage.measure import label

    return label(type_map > 0, connectivity=1).astype(np.int32)


def evaluate(
    predictions: Sequence[np.ndarray], test: Sequence[Sample], type_names: Mapping[int, str]
) -> dict[str, float]:
    """Dice per class, foreground Dice, AJI, bPQ, mPQ and PQ per class on the test set (flat dict)."""
    num_types = max(type_names)
    true_types = [s.types.astype(np.int32) for s in test]
    dice = dice_per_class(true_types, list(predictions), num_classes=num_types + 1)
    foreground = dice_per_class(
        [(t > 0).astype(np.int32) for t in true_types],
        [(p > 0).astype(np.int32) for p in predictions],
        num_classes=2,
    )[1]
    pred_inst = [instances_from_types(p) for p in predictions]
    pq = conic_pq([s.inst for s in test], true_types, pred_inst, list(predictions), num_types=num_types)
    aji = [aggregated_jaccard_index(s.inst, p) for s, p in zip(test, pred_inst)]
    row = {f"Dice {type_names[k]}": float(dice[k]) for k in range(1, num_types + 1)}
    row["Dice nuclei (foreground)"] = float(foreground)
    row["mPQ"] = pq["mPQ"]
    row["bPQ"] = pq["bPQ"]
    row["AJI"] = float(np.nanmean(aji)) if not np.isnan(aji).all() else float("nan")
    row.update({f"PQ {type_names[k]}": float(v["pq"]) for k, v in pq["per_class"].items()})
    return row


def paired_comparison(arm: Sequence[float], base: Sequence[float]) -> dict[str, float]:
    """Mean/std of the per-seed difference and paired tests (t-test, Wilcoxon) over seeds."""
    from scipy.stats import ttest_rel, wilcoxon

    a, b = np.asarray(arm, float), np.asarray(base, float)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = a[ok] - b[ok]
    out = {
        "diff_mean": float(np.mean(diff)) if len(diff) else float("nan"),
        "diff_std": float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan"),
        "t_test_p": float("nan"),
        "wilcoxon_p": float("nan"),
        "num_pairs": int(len(diff)),
    }
    if len(diff) > 1 and np.any(diff != 0):
        out["t_test_p"] = float(ttest_rel(a[ok], b[ok]).pvalue)
        out["wilcoxon_p"] = float(wilcoxon(a[ok], b[ok]).pvalue)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
