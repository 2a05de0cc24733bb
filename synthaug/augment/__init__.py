"""Mixing cached synthetic pairs into MONAI and segmentation-models-pytorch training.

``SyntheticAugment`` (a MONAI dictionary transform) and ``SyntheticMixDataset`` (a torch Dataset at an
exact real:synthetic ratio) both wrap a ``SyntheticSource``, which draws from a finished
``SyntheticCache``; ``HVMaps``/``HVMapsd`` and friends recompute HoVer-Net's training maps after spatial
augmentation. Nothing here imports the diffusion model.
"""

from synthaug.augment._draws import sample_draw_probabilities
from synthaug.augment._paste import paste_instances
from synthaug.augment.hovernet_maps import AlbumentationsHoVerNetMaps, HoVerNetMapsd, HVMaps, HVMapsd
from synthaug.augment.mix import SyntheticMixDataset
from synthaug.augment.source import SyntheticSource
from synthaug.augment.synthetic import SyntheticAugment

__all__ = [
    "AlbumentationsHoVerNetMaps",
    "HoVerNetMapsd",
    "HVMaps",
    "HVMapsd",
    "SyntheticAugment",
    "SyntheticMixDataset",
    "SyntheticSource",
    "paste_instances",
    "sample_draw_probabilities",
]
