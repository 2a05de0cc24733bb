"""Colour conditioning: measure nucleus/background stain colour, and paint requested colours.

``colour_stats`` turns an H&E tile into the 6-number colour condition (foreground and background
mean RGB); ``paint_colour_map`` is the inverse, a spatial map that says "these nuclei, in this
colour", optionally per instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from synthaug._validation import check_instance_mask, check_rgb_image


@dataclass(frozen=True)
class ColourStats:
    """Mean and standard deviation of RGB over nucleus (fg) and background (bg) pixels.

    Each field is a ``(3,)`` float32 RGB array in [0, 1]. A region without pixels (no nuclei, or
    nuclei everywhere) has mean and std 0.

    Attributes:
        fg_mean: mean RGB of nucleus pixels.
        fg_std: population standard deviation of nucleus pixels, per channel.
        bg_mean: mean RGB of background pixels.
        bg_std: population standard deviation of background pixels, per channel.
    """

    fg_mean: np.ndarray
    fg_std: np.ndarray
    bg_mean: np.ndarray
    bg_std: np.ndarray

    def as_vector(self) -> np.ndarray:
        """The ``(6,)`` float32 colour condition ``[fg_mean (RGB), bg_mean (RGB)]``."""
        return np.concatenate([self.fg_mean, self.bg_mean]).astype(np.float32)


def colour_stats(image: np.ndarray, inst: np.ndarray) -> ColourStats:
    """Foreground/background RGB mean and std of an image under its instance mask.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 (0..255) or float in [0, 1].
        inst: ``(H, W)`` integer instance mask of the same height and width (0 = background).

    Returns:
        :class:`ColourStats` with ``(3,)`` float32 fields in [0, 1].

    Raises:
        TypeError: on a non-integer mask or an image that is neither uint8 nor float.
        ValueError: on wrong shapes, a size mismatch, NaN/inf or out-of-range float values.

    Example:
        >>> image = np.zeros((4, 4, 3), np.uint8); inst = np.zeros((4, 4), np.int32)
        >>> image[:2] = 255; inst[:2] = 1
        >>> colour_stats(image, inst).as_vector()
        array([1., 1., 1., 0., 0., 0.], dtype=float32)
    """
    inst = check_instance_mask(inst, "inst")
    pixels = check_rgb_image(image, "image", shape_hw=inst.shape).reshape(-1, 3)
    _, mean, std = _grouped_mean_std(pixels, (inst.ravel() != 0).astype(np.intp), 2)
    return ColourStats(fg_mean=mean[1], fg_std=std[1], bg_mean=mean[0], bg_std=std[0])


def instance_colour_stats(image: np.ndarray, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std RGB of every nucleus.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float in [0, 1].
        inst: ``(H, W)`` integer instance mask of the same height and width.

    Returns:
        ``(ids, mean, std)``: ``ids`` ``(K,)`` the instance labels in ascending order (as int64),
        ``mean`` and ``std`` ``(K, 3)`` float32 RGB in [0, 1].

    Raises:
        TypeError, ValueError: as :func:`colour_stats`.
    """
    inst = check_instance_mask(inst, "inst")
    pixels = check_rgb_image(image, "image", shape_hw=inst.shape).reshape(-1, 3)
    ids, group = np.unique(inst.ravel(), return_inverse=True)
    _, mean, std = _grouped_mean_std(pixels, group.ravel(), ids.size)
    nuclei = ids != 0
    return ids[nuclei].astype(np.int64), mean[nuclei], std[nuclei]


def _grouped_mean_std(pixels: np.ndarray, group: np.ndarray, num_groups: int) -> tuple[np.ndarray, ...]:
    """Per-group count, mean and population std of ``(P, 3)`` pixels (float64 sums, float32 out)."""
    count = np.bincount(group, minlength=num_groups).astype(np.float64)
    safe = np.maximum(count, 1.0)[:, None]  # empty groups report 0, not NaN
    sums = np.stack([np.bincount(group, weights=pixels[:, k], minlength=num_groups) for k in range(3)], 1)
    mean = sums / safe
    centred = pixels - mean[group]  # two-pass variance: no catastrophic cancellation
    var = (
        np.stack([np.bincount(group, weights=centred[:, k] ** 2, minlength=num_groups) for k in range(3)], 1)
        / safe
    )
    return count, mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def paint_colour_map(
    inst: np.ndarray,
    fg_colour: ArrayLike,
    bg_colour: ArrayLike,
    *,
    instance_colours: Mapping[int, ArrayLike] | None = None,
) -> np.ndarray:
    """A ``(3, H, W)`` colour map: every nucleus in ``fg_colour``, background in ``bg_colour``.

    Args:
        inst: ``(H, W)`` integer instance mask.
        fg_colour: ``(3,)`` RGB in [0, 1] for nucleus pixels.
        bg_colour: ``(3,)`` RGB in [0, 1] for background pixels.
        instance_colours: optional ``{instance id: (3,) RGB}`` overriding ``fg_colour`` for those
            nuclei (ids absent from ``inst`` are ignored).

    Returns:
        ``(3, H, W)`` float32 in [0, 1].

    Raises:
        TypeError: on a non-integer mask.
        ValueError: on a colour that is not 3 finite values in [0, 1], or a bad mask.

    Example:
        >>> inst = np.array([[0, 1], [2, 2]])
        >>> paint_colour_map(inst, (1, 0, 0), (0, 0, 0), instance_colours={2: (0, 0, 1)})[2]
        array([[0., 0.],
               [1., 1.]], dtype=float32)
    """
    inst = check_instance_mask(inst, "inst")
    fg = _check_colour(fg_colour, "fg_colour")
    bg = _check_colour(bg_colour, "bg_colour")
    fg_mask = inst != 0
    out = np.empty((3, *inst.shape), np.float32)
    for k in range(3):
        np.copyto(out[k], np.where(fg_mask, fg[k], bg[k]))
    if instance_colours:
        if not isinstance(instance_colours, Mapping):
            raise TypeError(
                f"`instance_colours` must map instance id -> (3,) RGB, got {type(instance_colours).__name__}."
            )
        keys = [int(i) for i in instance_colours]
        if min(keys) < 0:
            raise ValueError(
                f"`instance_colours` has a negative instance id {min(keys)}; ids are labels >= 1."
            )
        # same signedness as the mask so searchsorted never compares through float64
        ids = np.array(keys, np.uint64 if inst.dtype == np.uint64 else np.int64)
        colours = np.stack([_check_colour(c, f"instance_colours[{i}]") for i, c in instance_colours.items()])
        order = np.argsort(ids)
        ids, colours = ids[order], colours[order]
        # locate each pixel's label among the requested ids (works for any label range)
        pos = np.clip(np.searchsorted(ids, inst), 0, ids.size - 1)
        hit = fg_mask & (ids[pos] == inst)
        out[:, hit] = colours[pos[hit]].T
    return out


def _check_colour(colour: ArrayLike, name: str) -> np.ndarray:
    """Validate a ``(3,)`` RGB colour in [0, 1]; returns float32."""
    try:
        value = np.asarray(colour, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be 3 numbers (RGB in [0, 1]), got {colour!r}.") from err
    if value.shape != (3,):
        raise ValueError(f"`{name}` must be an RGB triple of shape (3,), got shape {value.shape}.")
    if not np.isfinite(value).all() or value.min() < 0 or value.max() > 1:
        raise ValueError(
            f"`{name}` must be RGB in [0, 1], got {value.tolist()}; divide 0..255 colours by 255."
        )
    return value.astype(np.float32)
