"""synthaug: synthetic H&E image + nuclei-mask pairs for training segmentation models.

Conditions (HV maps, colour, types) -> MSDM (a multimodal conditional diffusion model) -> a zarr
cache of sampled pairs -> ``SyntheticAugment`` / ``SyntheticMixDataset`` in MONAI or SMP training.
"""

from __future__ import annotations

import importlib

from synthaug._version import __version__

# The names a user types first. Each is resolved on first use: the diffusion stack (diffusers,
# transformers) and MONAI are heavy and not needed to build conditions, and training a segmenter
# from a finished cache must not load diffusers. ``synthaug.MSDM`` / ``synthaug.MSDMPipeline`` must
# exist because diffusers reloads pipeline components by
# ``getattr(importlib.import_module("synthaug"), class_name)``.
_ON_FIRST_USE = {
    "MSDM": "synthaug.model.msdm",
    "MSDMPipeline": "synthaug.sampling.pipeline",
    "load_pipeline": "synthaug.sampling.pipeline",
    "generate_to_cache": "synthaug.sampling.generate",
    "SyntheticCache": "synthaug.sampling.cache",
    "SyntheticAugment": "synthaug.augment",
    "SyntheticMixDataset": "synthaug.augment",
    "open_dataset": "synthaug.data",
    "NucleiSegmenter": "synthaug.segment",
    "train_segmenter": "synthaug.segment",
    "load_segmenter": "synthaug.segment",
    "predict_nuclei": "synthaug.segment",
    "evaluate_segmenter": "synthaug.segment",
}


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
    raise AttributeError(f"module 'synthaug' has no attribute {name!r}")


__all__ = ["__version__", *_ON_FIRST_USE]
