"""A toy H&E renderer for generated layouts: the demo's stand-in for real tiles.

The image is built as stain concentrations and converted to RGB by Beer-Lambert colour
deconvolution's inverse (``skimage.color.combine_stains``), so it has the colour structure of
H&E: eosin (pink) stroma with fibre texture and pale gaps, cytoplasm halos around epithelial and
spindle nuclei, haematoxylin (purple-blue) nuclei with a darker rim and chromatin grain, darkest
for inflammatory cells and palest (vesicular) for epithelial ones. It is *toy data*: enough for a
tiny diffusion model to learn the mask -> image relation, not a substitute for real tiles.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage
from skimage.color import combine_stains, rgb_from_hed
from skimage.segmentation import find_boundaries
from tqdm.auto import tqdm

from synthaug._validation import check_instance_mask, check_int
from synthaug.data.layouts import generate_layout
from synthaug.data.record import Sample

# Haematoxylin optical density per nucleus type (id 0 unused); inflammatory nuclei are the darkest.
_NUCLEUS_H = np.array([0.0, 0.55, 0.8, 0.42, 0.6])
# Eosin added as cytoplasm around nuclei of each type: (strength, reach in px).
_CYTOPLASM = np.array([[0.0, 1.0], [0.08, 3.0], [0.02, 2.0], [0.14, 6.0], [0.06, 3.0]])
TOY_META = {"tissue": "colon", "assay": "H&E", "source": "synthaug toy renderer"}


def render_toy_tile(
    inst: np.ndarray,
    types: np.ndarray,
    inst_types: Mapping[int, int],
    *,
    seed: int | np.random.Generator | None = None,
    stain: np.ndarray | None = None,
) -> np.ndarray:
    """Paint a toy H&E image for an instance + type layout.

    Args:
        inst: ``(H, W)`` integer instance map (0 = background).
        types: ``(H, W)`` type map (CoNSeP ids 1..4); sets the cytoplasm around each nucleus.
        inst_types: instance id -> type id; sets each nucleus' darkness.
        seed: an int or ``np.random.Generator``; the same seed and masks give the same image.
        stain: optional ``(2, 3)`` or ``(3, 3)`` stain matrix in scikit-image's convention (rows =
            optical-density RGB vectors of haematoxylin, eosin[, DAB], as ``skimage.color.rgb_from_hed``).
            ``None`` draws a small seeded variation of ``rgb_from_hed``, so tiles differ in stain
            like slides do.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.

    Raises:
        TypeError, ValueError: for masks of the wrong kind or shape, or a malformed ``stain``.
    """
    inst = check_instance_mask(inst, "inst")
    if not isinstance(types, np.ndarray) or types.shape != inst.shape:
        raise ValueError(
            f"`types` must be an array with the shape of `inst` {inst.shape}, "
            f"got {getattr(types, 'shape', type(types).__name__)}."
        )
    if not isinstance(inst_types, Mapping):
        raise TypeError(f"`inst_types` must be a mapping id -> type id, got {type(inst_types).__name__}.")
    rng = np.random.default_rng(seed)
    matrix = _stain_matrix(stain, rng)
    height, width = inst.shape

    eosin = _stroma_eosin(rng, height, width)
    eosin += _cytoplasm_eosin(inst, types)
    haem = np.full((height, width), 0.1) + 0.03 * rng.random((height, width))

    darkness = np.zeros(int(inst.max(initial=0)) + 1)
    for k, t in inst_types.items():
        if 0 < k < len(darkness) and 0 < t < len(_NUCLEUS_H):
            darkness[k] = _NUCLEUS_H[t] * rng.lognormal(0.0, 0.12)
    nuclei = inst > 0
    # Chromatin grain inside, a darker nuclear membrane at the rim.
    grain = 1.0 + 0.2 * ndimage.gaussian_filter(rng.standard_normal((height, width)), 0.8) / 0.3
    rim = find_boundaries(inst, mode="inner") & nuclei
    nucleus_h = darkness[inst] * grain * np.where(rim, 1.45, 1.0)
    haem = np.where(nuclei, nucleus_h, haem)
    eosin = np.where(nuclei, 0.3 * eosin, eosin)
    # Soft edges, as seen through a slightly out-of-focus objective.
    haem = ndimage.gaussian_filter(np.clip(haem, 0, None), 0.6)
    eosin = ndimage.gaussian_filter(np.clip(eosin, 0, None), 0.6)

    # Values above are optical densities (base 10); combine_stains expects them divided by
    # -log10(1e-6) = 6, its internal normalisation.
    concentrations = np.stack([haem, eosin, np.zeros_like(haem)], axis=-1) / 6.0
    rgb = combine_stains(concentrations, matrix)
    rgb += rng.normal(0.0, 0.012, rgb.shape)  # sensor noise
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_toy_samples(
    n: int,
    height: int = 64,
    width: int = 64,
    *,
    seed: int = 0,
    meta: Mapping[str, str] | None = None,
    progress: bool = False,
    **layout_kwargs,
) -> list[Sample]:
    """Generated layouts with toy renders, as ``Sample`` records (a self-contained toy dataset).

    Sample ``i`` depends only on ``(seed, i)``. Each sample's ``group`` is its own name.

    Args:
        n: number of samples.
        height, width: tile size.
        seed: base seed.
        meta: metadata for every sample; defaults to ``TOY_META`` (which says it is toy data).
        progress: show a tqdm bar.
        **layout_kwargs: passed to :func:`~synthaug.data.layouts.generate_layout`
            (``type_shares``, ``density``, ``size``, ``gap``).

    Returns:
        ``n`` samples named ``toy_00000``, ...

    Raises:
        ValueError: when ``n`` is negative, or from ``generate_layout`` for bad layout arguments.
    """
    check_int(n, "n", minimum=0)
    samples = []
    for i in tqdm(range(n), desc="toy tiles", disable=not progress):
        rng = np.random.default_rng([seed, i])
        layout = generate_layout(height, width, seed=rng, name=f"toy_{i:05d}", **layout_kwargs)
        layout.meta = dict(TOY_META if meta is None else meta)
        image = render_toy_tile(layout.inst, layout.types, layout.inst_types, seed=rng)
        samples.append(layout.to_sample(image))
    return samples


def _stain_matrix(stain: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if stain is None:
        # Jitter each optical-density vector a little and re-normalise (slide-to-slide variation).
        matrix = rgb_from_hed * rng.lognormal(0.0, 0.08, (3, 3))
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    stain = np.asarray(stain, dtype=np.float64)
    if stain.shape not in ((2, 3), (3, 3)) or not np.isfinite(stain).all() or (stain < 0).any():
        raise ValueError(
            "`stain` must be a (2, 3) or (3, 3) array of non-negative optical-density RGB rows "
            f"(haematoxylin, eosin[, DAB]) like `skimage.color.rgb_from_hed`, got shape {stain.shape}."
        )
    if stain.shape[0] == 2:
        stain = np.vstack([stain, rgb_from_hed[2]])
    return stain


def _stroma_eosin(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Pink stroma: fibres along two random directions, modulated by pale gaps."""
    fibres = sum(_oriented_noise(rng, height, width, rng.uniform(0, np.pi), 6.0, 1.0) for _ in range(2))
    fibres /= fibres.std() + 1e-8
    blob = max(height, width) / 12
    coarse = _oriented_noise(rng, height, width, 0.0, blob, blob)  # isotropic, large: FFT beats convolution
    coarse /= coarse.std() + 1e-8
    # Loose tissue / lumen-like gaps where the coarse field is low.
    tissue = np.clip(0.75 + 0.35 * coarse, 0.1, 1.0)
    level = rng.uniform(0.13, 0.21)
    return level * tissue * np.clip(1.0 + 0.18 * fibres, 0.3, None)


def _oriented_noise(rng, height: int, width: int, angle: float, along: float, across: float) -> np.ndarray:
    """White noise blurred by a Gaussian with sigmas ``along`` / ``across`` ``angle`` (px), via FFT.

    Filtering in the frequency domain rotates the kernel for free; the texture wraps around the
    edges, which is invisible in noise.
    """
    ky = np.fft.fftfreq(height)[:, None]
    kx = np.fft.rfftfreq(width)[None, :]
    u = kx * np.cos(angle) + ky * np.sin(angle)  # frequency along the fibres
    v = -kx * np.sin(angle) + ky * np.cos(angle)
    response = np.exp(-2 * np.pi**2 * ((along * u) ** 2 + (across * v) ** 2))
    spectrum = np.fft.rfft2(rng.standard_normal((height, width))) * response
    return np.fft.irfft2(spectrum, s=(height, width))


def _cytoplasm_eosin(inst: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Eosin halo around each nucleus, its strength and reach set by the nearest nucleus' type."""
    nuclei = inst > 0
    if not nuclei.any():
        return np.zeros(inst.shape)
    dist, (iy, ix) = ndimage.distance_transform_edt(~nuclei, return_indices=True)
    nearest_type = np.clip(types[iy, ix].astype(np.int64), 0, len(_CYTOPLASM) - 1)
    strength, reach = _CYTOPLASM[nearest_type, 0], _CYTOPLASM[nearest_type, 1]
    return strength * np.exp(-dist / reach)


__all__ = ["TOY_META", "make_toy_samples", "render_toy_tile"]
