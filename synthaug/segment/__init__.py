"""synthaug.segment: a HoVer-Net-style nuclei segmenter to measure what synthetic pairs are worth.

- :class:`NucleiSegmenter` / :class:`SegmenterConfig`: an ImageNet EfficientNet-Lite0 encoder and an
  SMP U-Net decoder per HoVer-Net branch (NP, HV, TP); ``save_pretrained`` / ``load_segmenter``.
- :func:`train_segmenter` / :class:`SegmenterTrainingConfig`: HV targets after geometry, MONAI's
  ``HoVerNetLoss`` (:func:`hovernet_loss`: types from real draws only, or from the chosen types of
  synthetic ones, if asked), resumable
  checkpoints, a loss curve; ``synthetic=`` takes a ``SyntheticAugment``.
- :func:`predict_nuclei`: sliding-window inference on a tile of any size, averaged over flips
  (:class:`FlipAveraged`), instances by MONAI's HoVer-Net watershed post-processing, a type per
  instance.
- :func:`evaluate_segmenter` / :func:`score_predictions`: Dice, AJI, PQ, mPQ, detection and per-type F1.

Imports ``augment`` (for ``HVMapsd``) but never ``model``/``sampling``' diffusion stack: training from a
finished cache needs no diffusers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synthaug.segment.evaluate import (
    MARKER_THRESHOLDS,
    TYPE_FREE_METRICS,
    binary_dice,
    calibrate_marker_threshold,
    evaluate_segmenter,
    format_table,
    score_predictions,
)
from synthaug.segment.model import NucleiSegmenter, SegmenterConfig
from synthaug.segment.predict import (
    FlipAveraged,
    NucleiPrediction,
    centroids_of,
    predict_many,
    predict_nuclei,
)
from synthaug.segment.train import (
    SegmenterTrainingConfig,
    TrainingHistory,
    hovernet_loss,
    loss_figure,
    train_segmenter,
)


def load_segmenter(path: str | Path, *, device: str | torch.device = "cpu") -> NucleiSegmenter:
    """A saved segmenter: a ``model/`` folder, or a training output folder that holds one."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"
    return NucleiSegmenter.from_pretrained(path, device=device)


__all__ = [
    "MARKER_THRESHOLDS",
    "TYPE_FREE_METRICS",
    "calibrate_marker_threshold",
    "FlipAveraged",
    "NucleiPrediction",
    "NucleiSegmenter",
    "SegmenterConfig",
    "SegmenterTrainingConfig",
    "TrainingHistory",
    "binary_dice",
    "centroids_of",
    "evaluate_segmenter",
    "format_table",
    "hovernet_loss",
    "load_segmenter",
    "loss_figure",
    "predict_many",
    "predict_nuclei",
    "score_predictions",
    "train_segmenter",
]
