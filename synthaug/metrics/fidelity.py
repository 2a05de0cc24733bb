"""How close synthetic images are to real ones, measured in a named encoder's feature space.

Every number is reported under a key that names the method and the encoder, e.g.
``"FID (EfficientNet-Lite0 features)"``: a Fréchet distance in EfficientNet features is not
comparable with published FID (Inception-v3), so it is never called plain "FID" unless the
standard Inception weights were used.

- FID and KID: torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance``, fed with
  features computed once (a pass-through "feature extractor" receives them), so the encoder runs a
  single time for all metrics.
- Sliced Wasserstein-1: the mean over seeded random unit directions of the 1-D Wasserstein-1
  distance (``scipy.stats.wasserstein_distance``) between the projected feature sets; overall and
  per condition group (tissue, assay, type-rich vs not, ...).
- Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020) of the
  real and synthetic manifolds, with k-NN radii from ``sklearn.neighbors.NearestNeighbors``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from sklearn.metrics import pairwise_distances_chunked
from sklearn.neighbors import NearestNeighbors
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from synthaug._validation import check_int
from synthaug.metrics.features import FeatureExtractor, extract_features, load_feature_extractor


class _Precomputed(nn.Module):
    """Pass-through "feature extractor": lets torchmetrics' FID/KID consume stored features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _check_features(x: Any, name: str, *, min_rows: int = 2) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"`{name}` must be an (N, D) numpy array of features, got {type(x).__name__}.")
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"`{name}` must be (N, D) with N >= {min_rows}, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x.astype(np.float64, copy=False)


def _check_same_dim(real: np.ndarray, synth: np.ndarray) -> None:
    if real.shape[1] != synth.shape[1]:
        raise ValueError(
            f"`real` has {real.shape[1]}-d features but `synth` {synth.shape[1]}-d; use one encoder for both."
        )


def metric_name(method: str, encoder: str) -> str:
    """The report key for a metric, naming its encoder: ``"FID (EfficientNet-Lite0 features)"``.

    Only the standard Inception-v3 gives the bare names FID / KID.
    """
    if encoder.startswith("Inception-v3 (FID"):
        return method
    if method.endswith(")"):  # "precision (k=5)" -> "precision (k=5, X features)"
        return f"{method[:-1]}, {encoder} features)"
    return f"{method} ({encoder} features)"


def frechet_distance(real: np.ndarray, synth: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (torchmetrics' FID maths).

    Args:
        real, synth: ``(N, D)`` and ``(M, D)`` features, ``N, M >= 2``.

    Returns:
        The squared Fréchet distance (what "FID" reports).

    Raises:
        TypeError, ValueError: on malformed features.
    """
    real, synth = _check_features(real, "real"), _check_features(synth, "synth")
    _check_same_dim(real, synth)
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), reset_real_features=True)
    fid.set_dtype(torch.float64)
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(synth), real=False)
    return float(fid.compute())


def kernel_distance(
    real: np.ndarray, synth: np.ndarray, *, subsets: int = 100, subset_size: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """Kernel (polynomial MMD) distance between two feature sets, torchmetrics' KID maths.

    Args:
        real, synth: ``(N, D)`` and ``(M, D)`` features.
        subsets: number of random subsets averaged.
        subset_size: samples per subset; default ``min(1000, min(N, M) // 2)`` (at least 2), so
            small sets still draw differing subsets and the std means something.
        seed: seeds the subset draws (torch's global generator is restored afterwards).

    Returns:
        ``(mean, std)`` over subsets.

    Raises:
        TypeError, ValueError: on malformed features.
    """
    real, synth = _check_features(real, "real"), _check_features(synth, "synth")
    _check_same_dim(real, synth)
    smallest = min(len(real), len(synth))
    size = max(2, min(1000, smallest // 2)) if subset_size is None else min(subset_size, smallest)
    with warnings.catch_warnings():  # the "saves all features in a buffer" notice: we hold them anyway
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    kid.update(torch.from_numpy(real), real=True)
    kid.update(torch.from_numpy(synth), real=False)
    # torchmetrics draws subsets with torch.randperm on the global generator; fork it so the
    # caller's random state is untouched and the result is reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


def sliced_wasserstein(
    real: np.ndarray, synth: np.ndarray, *, num_projections: int = 128, seed: int = 0
) -> float:
    """Sliced Wasserstein-1 distance between two feature sets.

    Both sets are projected on ``num_projections`` random unit directions (drawn from a seeded
    generator, the same for every call with the same ``seed``), and the 1-D Wasserstein-1 distances
    (``scipy.stats.wasserstein_distance``) are averaged. For 1-D features every direction is
    ``±1`` and the result is the exact Wasserstein-1 distance.

    Args:
        real, synth: ``(N, D)`` and ``(M, D)`` features (``N, M >= 1``).
        num_projections: number of random directions.
        seed: seed of the directions.

    Returns:
        The sliced Wasserstein-1 distance (in feature units).

    Raises:
        TypeError, ValueError: on malformed features or ``num_projections < 1``.
    """
    real = _check_features(real, "real", min_rows=1)
    synth = _check_features(synth, "synth", min_rows=1)
    _check_same_dim(real, synth)
    check_int(num_projections, "num_projections", minimum=1)
    directions = np.random.default_rng(seed).standard_normal((real.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    real_p, synth_p = real @ directions, synth @ directions
    return float(np.mean([wasserstein_distance(real_p[:, j], synth_p[:, j]) for j in range(num_projections)]))


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    # n_neighbors=k+1: each point is its own nearest neighbour at distance 0.
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return distances[:, -1]


def _count_inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each query, how many balls ``(centre, radius)`` contain it; chunked, never N x M at once."""

    def reduce(chunk: np.ndarray, start: int) -> np.ndarray:
        return (chunk <= radii[None, :]).sum(axis=1)

    return np.concatenate(list(pairwise_distances_chunked(queries, centres, reduce_func=reduce)))


def manifold_metrics(real: np.ndarray, synth: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

    Each point's manifold ball has the radius of its k-th nearest neighbour within its own set.
    Precision: share of synthetic points inside some real ball; recall: share of real points inside
    some synthetic ball; density: mean number of real balls holding a synthetic point, over ``k``;
    coverage: share of real balls holding at least one synthetic point.

    Args:
        real, synth: ``(N, D)`` and ``(M, D)`` features with ``N, M > k``.
        k: neighbourhood size (5 in both papers).

    Returns:
        ``{"precision", "recall", "density", "coverage"}``.

    Raises:
        TypeError, ValueError: on malformed features or too few points for ``k``.
    """
    check_int(k, "k", minimum=1)
    real = _check_features(real, "real", min_rows=k + 1)
    synth = _check_features(synth, "synth", min_rows=k + 1)
    _check_same_dim(real, synth)
    real_radii = _kth_neighbour_radius(real, k)
    synth_radii = _kth_neighbour_radius(synth, k)
    synth_in_real = _count_inside(synth, real, real_radii)
    real_in_synth = _count_inside(real, synth, synth_radii)
    nearest_synth, _ = NearestNeighbors(n_neighbors=1).fit(synth).kneighbors(real)
    return {
        "precision": float((synth_in_real > 0).mean()),
        "recall": float((real_in_synth > 0).mean()),
        "density": float(synth_in_real.sum() / (k * len(synth))),
        "coverage": float((nearest_synth[:, 0] <= real_radii).mean()),
    }


def groups_from_labels(
    real_labels: Sequence[str], synth_labels: Sequence[str], *, prefix: str = ""
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Condition groups for :func:`fidelity_report` from one label per image (e.g. the tissue).

    Args:
        real_labels, synth_labels: a label per real / synthetic image.
        prefix: prepended to each group name, e.g. ``"tissue="``.

    Returns:
        ``{prefix + label: (real_indices, synth_indices)}`` for every label seen in either set.
    """
    real_labels, synth_labels = np.asarray(real_labels, dtype=str), np.asarray(synth_labels, dtype=str)
    labels = sorted(set(real_labels) | set(synth_labels))
    return {
        f"{prefix}{lab}": (np.flatnonzero(real_labels == lab), np.flatnonzero(synth_labels == lab))
        for lab in labels
    }


def fidelity_from_features(
    real: np.ndarray,
    synth: np.ndarray,
    *,
    encoder: str,
    groups: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
    k: int = 5,
    num_projections: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """All fidelity metrics from precomputed features; see :func:`fidelity_report`."""
    real, synth = _check_features(real, "real"), _check_features(synth, "synth")
    _check_same_dim(real, synth)
    swd = f"Sliced Wasserstein-1 ({num_projections} projections)"
    kid_mean, kid_std = kernel_distance(real, synth, seed=seed)
    report: dict[str, Any] = {
        "encoder": encoder,
        "num_real": len(real),
        "num_synthetic": len(synth),
        metric_name("FID", encoder): frechet_distance(real, synth),
        metric_name("KID mean", encoder): kid_mean,
        metric_name("KID std", encoder): kid_std,
    }
    report[metric_name(swd, encoder)] = sliced_wasserstein(
        real, synth, num_projections=num_projections, seed=seed
    )
    if min(len(real), len(synth)) > k:
        for key, value in manifold_metrics(real, synth, k=k).items():
            paper = "Kynkaanniemi" if key in ("precision", "recall") else "Naeem"
            report[metric_name(f"{key} ({paper} k={k})", encoder)] = value
    report["groups"] = {}
    for name, (real_idx, synth_idx) in (groups or {}).items():
        real_idx, synth_idx = np.asarray(real_idx, dtype=np.int64), np.asarray(synth_idx, dtype=np.int64)
        entry: dict[str, Any] = {"num_real": len(real_idx), "num_synthetic": len(synth_idx)}
        if len(real_idx) and len(synth_idx):
            entry[metric_name(swd, encoder)] = sliced_wasserstein(
                real[real_idx], synth[synth_idx], num_projections=num_projections, seed=seed
            )
        report["groups"][name] = entry
    return report


def fidelity_report(
    real_images: np.ndarray | Sequence[np.ndarray],
    synth_images: np.ndarray | Sequence[np.ndarray],
    *,
    groups: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
    extractor: FeatureExtractor | None = None,
    k: int = 5,
    num_projections: int = 128,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Fidelity of synthetic images against real ones, every number named with method and encoder.

    Args:
        real_images, synth_images: ``(N, H, W, 3)`` uint8 / float ``[0, 1]`` arrays or lists of
            ``(H, W, 3)`` images (at least 2 each; more than ``k`` for precision/recall/coverage).
        groups: condition groups, ``{name: (real_indices, synth_indices)}`` (e.g. from
            :func:`groups_from_labels`); each gets its own sliced Wasserstein distance.
        extractor: the encoder; default :func:`load_feature_extractor` (EfficientNet-Lite0).
        k: neighbourhood size of the manifold metrics.
        num_projections: random directions of the sliced Wasserstein distance.
        seed: seeds the projections and KID subsets.
        batch_size: images per encoder pass.
        progress: show tqdm bars while encoding.

    Returns:
        A JSON-ready dict: ``encoder``, counts, ``"FID (<encoder> features)"``, KID mean/std, sliced
        Wasserstein-1, precision/recall/density/coverage, and ``groups``.

    Raises:
        TypeError, ValueError: on malformed images or options.
    """
    extractor = extractor if extractor is not None else load_feature_extractor()
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"`extractor` must be a FeatureExtractor, got {type(extractor).__name__}.")
    real = extract_features(real_images, extractor, batch_size=batch_size, progress=progress)
    synth = extract_features(synth_images, extractor, batch_size=batch_size, progress=progress)
    return fidelity_from_features(
        real,
        synth,
        encoder=extractor.display_name,
        groups=groups,
        k=k,
        num_projections=num_projections,
        seed=seed,
    )
