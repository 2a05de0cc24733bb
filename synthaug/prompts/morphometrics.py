"""Interpretable per-tile features: H&E stain intensities and nuclear morphometrics.

These are the features a morphology group is *described* with, so each one has a name, a unit a
pathologist can read, and a pair of words for "below" / "above" the fitted population (see
``synthaug.prompts.describe``). The frozen-encoder embedding carries most of the clustering signal;
these carry the words.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hed
from skimage.measure import regionprops_table

from synthaug._validation import check_instance_mask, check_rgb_image

#: Features measured from the image alone (colour deconvolution, Ruifrok & Johnston, via rgb2hed).
STAIN_FEATURES: tuple[str, ...] = ("haematoxylin_mean", "haematoxylin_std", "eosin_mean", "eosin_std")
#: Features measured from an instance mask.
MASK_FEATURES: tuple[str, ...] = ("nuclear_density", "nuclear_area", "nuclear_eccentricity")

# Density is reported per 10,000 px (a 100 x 100 px window) so that values are O(1..100) for tiles
# at 20-40x rather than tiny fractions; it is still resolution-dependent, like every pixel measure.
_DENSITY_AREA_PX = 10_000.0


def stain_features(image: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of the haematoxylin and eosin optical densities of one tile.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float in [0, 1].

    Returns:
        ``(4,)`` float64 in the order of :data:`STAIN_FEATURES`.

    Raises:
        TypeError, ValueError: if ``image`` is not an RGB image (see ``check_rgb_image``).
    """
    rgb = check_rgb_image(image, "image")
    hed = rgb2hed(rgb)
    haem, eosin = hed[..., 0], hed[..., 1]
    return np.array([haem.mean(), haem.std(), eosin.mean(), eosin.std()], dtype=np.float64)


def mask_features(inst: np.ndarray) -> np.ndarray:
    """Nuclear density, mean nuclear area and mean eccentricity of one instance mask.

    Args:
        inst: ``(H, W)`` integer instance mask, 0 = background.

    Returns:
        ``(3,)`` float64 in the order of :data:`MASK_FEATURES`: nuclei per 10,000 px, mean area in
        px, mean eccentricity (0 = circle, towards 1 = elongated). Area and eccentricity are NaN for
        a mask without nuclei (undefined, not zero); the prompter imputes them with the population
        mean.

    Raises:
        TypeError, ValueError: if ``inst`` is not an integer instance mask.
    """
    inst = check_instance_mask(inst, "inst")
    props = regionprops_table(inst, properties=("area", "eccentricity"))
    count = len(props["area"])
    density = count * _DENSITY_AREA_PX / max(inst.size, 1)
    if count == 0:
        return np.array([density, np.nan, np.nan], dtype=np.float64)
    return np.array([density, props["area"].mean(), props["eccentricity"].mean()], dtype=np.float64)
