"""Input checks shared by every public boundary.

Each check raises ``TypeError`` (wrong kind of object / dtype) or ``ValueError`` (wrong shape or
values) whose message names the argument, says what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INT_KINDS = ("i", "u")


def check_instance_mask(inst: Any, name: str = "inst", *, ndim: int = 2) -> np.ndarray:
    """Validate an integer instance mask (0 = background, labels need not be contiguous).

    Returns the input as a C-contiguous ``np.ndarray`` (no copy when already contiguous).
    Accepts any signed/unsigned integer dtype up to 64 bits; bool masks are refused because a
    binary mask has no instances (label it first, e.g. ``skimage.measure.label``).
    """
    if not isinstance(inst, np.ndarray):
        if hasattr(inst, "detach") and hasattr(inst, "cpu"):  # a torch tensor
            inst = inst.detach().cpu().numpy()
        else:
            raise TypeError(
                f"`{name}` must be a numpy array of integer instance labels, got {type(inst).__name__}."
            )
    if inst.dtype == np.bool_:
        raise TypeError(
            f"`{name}` is a boolean mask; an instance mask needs one integer label per nucleus. "
            "Label it first, e.g. `skimage.measure.label(mask)`."
        )
    if inst.dtype.kind not in _INT_KINDS:
        raise TypeError(
            f"`{name}` must have an integer dtype (instance labels), got {inst.dtype}. "
            "Float masks are ambiguous; cast with `.astype(np.int32)` after checking the values are whole."
        )
    if inst.ndim != ndim:
        shape = "(H, W)" if ndim == 2 else "(N, H, W)"
        raise ValueError(f"`{name}` must be {ndim}-D {shape}, got shape {inst.shape}.")
    if inst.size and inst.dtype.kind == "i" and inst.min() < 0:
        raise ValueError(
            f"`{name}` has negative labels (min {int(inst.min())}); use 0 for background and "
            "positive integers for nuclei."
        )
    return np.ascontiguousarray(inst)


def check_rgb_image(
    image: Any, name: str = "image", *, shape_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """Validate an RGB image, HWC, uint8 or float in [0, 1]; returns it as float32 in [0, 1]."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array (H, W, 3), got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must be an RGB image of shape (H, W, 3), got {image.shape}. "
            "Convert CHW with `np.moveaxis(image, 0, -1)`."
        )
    if shape_hw is not None and tuple(image.shape[:2]) != tuple(shape_hw):
        raise ValueError(
            f"`{name}` is {image.shape[0]}x{image.shape[1]} but the mask is {shape_hw[0]}x{shape_hw[1]}; "
            "image and mask must have the same height and width."
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype.kind != "f":
        raise TypeError(f"`{name}` must be uint8 (0..255) or float (0..1), got {image.dtype}.")
    if not np.isfinite(image).all():
        raise ValueError(f"`{name}` contains NaN or infinite values; clean or re-read the image.")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise ValueError(
            f"`{name}` is float with values in [{image.min():.3g}, {image.max():.3g}]; float images must "
            "lie in [0, 1] (divide uint8 images by 255)."
        )
    return image.astype(np.float32, copy=False)


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    hint: str = "",
) -> int:
    """Validate an integer (Python or numpy; ``bool`` refused) in ``[minimum, maximum]``; returns an ``int``.

    ``TypeError`` for a non-integer (``2.0``, ``"3"``, ``True``), ``ValueError`` for one out of range;
    ``hint`` (e.g. ``"0 keeps every instance"``) says what the bound means.
    """
    if maximum is not None and minimum is not None:
        bounds = f"an integer in [{minimum}, {maximum}]"
    elif minimum == 1:
        bounds = "a positive integer"
    elif minimum is not None:
        bounds = f"an integer >= {minimum}"
    elif maximum is not None:
        bounds = f"an integer <= {maximum}"
    else:
        bounds = "an integer"
    why = f" ({hint})" if hint else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be {bounds}{why}, got {type(value).__name__} {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be {bounds}{why}, got {value!r}.")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string option against its valid values."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_probability(value: Any, name: str) -> float:
    """Validate a probability in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number in [0, 1], got {type(value).__name__}.")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {value}.")
    return float(value)


def default_device(device: Any = None) -> Any:
    """The device to run on: ``device`` when given, else CUDA when torch sees a GPU, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
