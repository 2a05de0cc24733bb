"""Fidelity (FID/KID with a named encoder, Wasserstein, coverage) and segmentation (Dice/AJI/PQ) metrics.

``synthaug.metrics.segmentation`` needs numpy/scipy only; the fidelity metrics and feature
extractors pull in torch, timm, torchmetrics and scikit-learn.
"""

from synthaug.metrics.features import (
    FeatureExtractor,
    extract_features,
    load_feature_extractor,
)
from synthaug.metrics.fidelity import (
    fidelity_from_features,
    fidelity_report,
    frechet_distance,
    groups_from_labels,
    kernel_distance,
    manifold_metrics,
    metric_name,
    sliced_wasserstein,
)
from synthaug.metrics.segmentation import (
    PQResult,
    aggregated_jaccard_index,
    conic_pq,
    dice_per_class,
    instance_classes,
    panoptic_quality,
)

__all__ = [
    "FeatureExtractor",
    "PQResult",
    "aggregated_jaccard_index",
    "conic_pq",
    "dice_per_class",
    "extract_features",
    "fidelity_from_features",
    "fidelity_report",
    "frechet_distance",
    "groups_from_labels",
    "instance_classes",
    "kernel_distance",
    "load_feature_extractor",
    "manifold_metrics",
    "metric_name",
    "panoptic_quality",
    "sliced_wasserstein",
]
