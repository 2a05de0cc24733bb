"""synthaug: synthetic H&E image + nuclei-mask pairs for training segmentation models.

Conditions (HV maps, colour, types) -> MSDM (a multimodal conditional diffusion model) -> a zarr
cache of sampled pairs -> ``SyntheticAugment`` / ``SyntheticMixDataset`` in MONAI or SMP training.
"""

from __future__ import annotations

import importlib

from synthaug._version import __version__

# The diffusion stack (diffusers, transformers) is heavy and not needed to build conditions or to
# train a segmenter from a finished cache, so the two diffusers classes are resolved on first use.
# They must still be reachable as ``synthaug.MSDM`` / ``synthaug.MSDMPipeline``: diffusers reloads
# pipeline components by ``getattr(importlib.import_module("synthaug"), class_name)``.
_ON_FIRST_USE = {
    "MSDM": "synthaug.model.msdm",
    "MSDMPipeline": "synthaug.sampling.pipeline",
}


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
    raise AttributeError(f"module 'synthaug' has no attribute {name!r}")


__all__ = ["__version__", "MSDM", "MSDMPipeline"]
