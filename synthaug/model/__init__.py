"""MSDM (a diffusers model), its text/colour condition encoders, training loop and loading."""

from synthaug.model.dataset import MSDMTrainDataset
from synthaug.model.encoders import MODALITIES, ConditionTokenizer
from synthaug.model.loading import load_msdm
from synthaug.model.msdm import MODEL_PRESETS, MSDM, MSDMOutput
from synthaug.model.text import TextEmbeddingCache, metadata_to_text
from synthaug.model.train import (
    TrainConfig,
    check_new_run_folder,
    diffusion_loss,
    make_noise_scheduler,
    train_msdm,
)

__all__ = [
    "MODALITIES",
    "MODEL_PRESETS",
    "MSDM",
    "ConditionTokenizer",
    "MSDMOutput",
    "MSDMTrainDataset",
    "TextEmbeddingCache",
    "TrainConfig",
    "check_new_run_folder",
    "diffusion_loss",
    "load_msdm",
    "make_noise_scheduler",
    "metadata_to_text",
    "train_msdm",
]
