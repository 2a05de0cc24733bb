"""File readers shared by the dataset readers: RGB images and MATLAB label files.

Both raise ``ValueError`` naming the file when it is missing, corrupt or not what the reader
expects, so a user with one bad file among thousands finds it at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Palette, greyscale and RGBA files (CoNSeP's PNGs carry an alpha channel) are converted to RGB;
    16-bit files are refused rather than silently truncated.

    Args:
        path: image file (PNG, JPEG, TIFF, BMP).

    Returns:
        The image as a ``(H, W, 3)`` uint8 array.

    Raises:
        ValueError: if the file is missing, cannot be decoded or is not 8-bit.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise ValueError(
                    f"{path}: image mode {img.mode!r} is not 8-bit; H&E tiles must be 8-bit colour images."
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ValueError(f"{path}: image file not found.") from None
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(path, err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        # PIL raises OSError for truncated files and SyntaxError for some broken headers.
        raise ValueError(
            f"{path}: cannot decode the image ({err}); the file is corrupt or not an image."
        ) from err


def read_label_image(path: str | Path) -> np.ndarray:
    """Read a label image (PNG/TIFF of integer ids, or ``.npy``) as a 2-D or 3-D integer array.

    Args:
        path: a 8/16-bit PNG or TIFF of ids, or a ``.npy`` array (never unpickled).

    Returns:
        The labels as int64 (whole-valued float arrays are accepted).

    Raises:
        ValueError: if the file cannot be read or does not hold integer labels.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as img:
                array = np.asarray(img)
    except FileNotFoundError:
        raise ValueError(f"{path}: label file not found.") from None
    except Image.DecompressionBombError as err:
        raise ValueError(_bomb_message(path, err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the label file ({err}).") from err
    return as_integer_labels(array, f"{path}")


def _bomb_message(path: Path, err: Exception) -> str:
    # PIL's own message names neither the file nor what to do about it.
    return (
        f"{path}: PIL refused the image as a possible decompression bomb ({err}). A whole-slide image "
        "does not belong in a tile folder: tile it first (synthaug.data.tiling), or raise "
        "PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
    )


def as_integer_labels(array: np.ndarray, where: str) -> np.ndarray:
    """Return ``array`` as int64 labels; float arrays are accepted only when every value is whole.

    Several releases store instance maps as float64 (CoNSeP's original ``.mat``, PanNuke's masks).

    Args:
        array: the labels.
        where: the file (and entry) they came from, quoted in errors.

    Raises:
        ValueError: for boolean, non-numeric, fractional, non-finite or negative labels.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_:
        raise ValueError(f"{where}: labels are boolean; an instance mask needs one integer id per nucleus.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.equal(np.mod(array, 1), 0).all():
            raise ValueError(
                f"{where}: float labels with non-integer or non-finite values; expected whole ids."
            )
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels have dtype {array.dtype}; expected integers.")
    if array.size and array.min() < 0:
        raise ValueError(
            f"{where}: labels contain negative values (min {array.min()}); use 0 for background."
        )
    return array.astype(np.int64, copy=False)


def load_mat(path: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named variables of a MATLAB v5 ``.mat`` file.

    Args:
        path: the ``.mat`` file.
        keys: variables that must be present.

    Returns:
        ``{key: array}`` for every key asked for.

    Raises:
        ValueError: if the file is missing, corrupt or lacks one of ``keys``.
    """
    from scipy.io import loadmat  # scipy.io is slow to import; only readers of .mat need it

    path = Path(path)
    try:
        content = loadmat(path, variable_names=list(keys))
    except FileNotFoundError:
        raise ValueError(f"{path}: label file not found.") from None
    except (ValueError, TypeError, IndexError, OSError, zlib.error) as err:
        # scipy's parser raises all of these for damaged files (MatReadError is a ValueError)
        raise ValueError(
            f"{path}: cannot read the .mat file ({err}); it is corrupt or not MATLAB v5."
        ) from err
    missing = [key for key in keys if key not in content]
    if missing:
        raise ValueError(f"{path}: missing variable(s) {missing}; expected {list(keys)}.")
    return {key: content[key] for key in keys}


def index_files(root: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Map file stem -> path for every file under ``root`` (recursively) with one of ``suffixes``.

    Raises:
        ValueError: if two files share a stem, which would make the pairing of images and labels ambiguous.
    """
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise ValueError(
                    f"two files named {path.stem!r} under {root}: {found[path.stem]} and {path}; "
                    "file stems must be unique to pair images with labels."
                )
            found[path.stem] = path
    return found
