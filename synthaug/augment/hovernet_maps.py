"""HoVer-Net's training maps after geometry: HV maps and type one-hot recomputed from the augmented masks.

Warping a precomputed HV map is wrong: after a horizontal flip the h channel must still grow from
left to right, but the flipped map decreases, and rotations swap and negate channels. So HoVer-Net
style training augments the *instance and type masks* and recomputes the maps afterwards; the
numba kernels make that cheap enough to do inside a DataLoader.

- MONAI: :class:`HVMaps` (array) / :class:`HVMapsd` (dictionary, as ``ComputeHoVerMapsd``), and
  :class:`HoVerNetMapsd`, which writes HV maps and the type one-hot in one step. Put them
  after the spatial transforms of a ``Compose``.
- albumentations: :class:`AlbumentationsHoVerNetMaps`, the last step of an ``A.Compose``; it leaves
  the image and masks alone and adds HWC ``hv`` (and ``type_one_hot``) entries to the output.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import albumentations as A
import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_data_type, convert_to_dst_type
from numpy.typing import DTypeLike

from synthaug._validation import check_choice
from synthaug.conditions import compute_hv_maps, type_one_hot
from synthaug.conditions.hv import HV_CONVENTIONS

__all__ = ["AlbumentationsHoVerNetMaps", "HoVerNetMapsd", "HVMaps", "HVMapsd"]


def _label_array(mask: Any, name: str, *, channel_axis: int) -> np.ndarray:
    """A 2-D integer label array from a ``(1, H, W)`` / ``(H, W, 1)`` / ``(H, W)`` mask.

    Geometric transforms (MONAI's affine/rotate with nearest interpolation, albumentations with
    float masks) often hand back labels as floats; whole, non-negative float values are accepted
    and cast, anything else is refused because it means the labels were interpolated.
    """
    array = convert_data_type(mask, np.ndarray)[0]
    if array.ndim == 3 and array.shape[channel_axis] == 1:
        array = np.squeeze(array, axis=channel_axis)
    if array.ndim != 2:
        layout = "(1, H, W) or (H, W)" if channel_axis == 0 else "(H, W) or (H, W, 1)"
        raise ValueError(f"`{name}` must be a single-channel mask {layout}, got shape {array.shape}.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any() or (array < 0).any():
            raise ValueError(
                f"`{name}` holds non-integer or negative values: labels were interpolated. Use "
                "nearest-neighbour interpolation (mode='nearest') for label keys in spatial transforms."
            )
        array = array.astype(np.int64)
    return array


class HVMaps(Transform):
    """HV maps of a channel-first instance mask, ``(1, H, W) -> (2, H, W)`` ``[h, v]``.

    A drop-in for ``monai.transforms.ComputeHoVerMaps`` (identical output with
    ``convention="monai"``) running the numba kernel of :func:`synthaug.conditions.compute_hv_maps`.
    The output has the input's type (numpy array, tensor, or ``MetaTensor`` with its metadata).

    Args:
        convention: ``"monai"`` or ``"hovernet"`` (see ``compute_hv_maps``).
        dtype: floating output dtype.
        min_area: instances with fewer pixels get zero HV values (HoVer-Net used 30).

    Example:
        >>> HVMaps()(np.array([[[0, 3, 3, 3]]])).tolist()
        [[[0.0, -1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0, 0.0]]]
    """

    def __init__(self, convention: str = "monai", dtype: DTypeLike = np.float32, min_area: int = 0) -> None:
        self.convention = check_choice(convention, "convention", HV_CONVENTIONS)
        self.dtype = dtype
        self.min_area = min_area
        # a 1x1 dry run validates dtype/min_area here, not on the first sample inside a DataLoader
        compute_hv_maps(np.zeros((1, 1), np.int32), convention=convention, dtype=dtype, min_area=min_area)

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """Args: mask: ``(1, H, W)`` or ``(H, W)`` instance labels. Returns: ``(2, H, W)``."""
        labels = _label_array(mask, "mask", channel_axis=0)
        hv = compute_hv_maps(labels, convention=self.convention, dtype=self.dtype, min_area=self.min_area)
        return convert_to_dst_type(hv, mask, dtype=hv.dtype)[0]


class HVMapsd(MapTransform):
    """Dictionary twin of :class:`HVMaps`: ``d[new_key_prefix + key] = HVMaps(d[key])``.

    Same arguments as ``monai.transforms.ComputeHoVerMapsd`` plus ``convention`` and ``min_area``.

    Args:
        keys: instance-mask keys.
        new_key_prefix: prefix of the output key (``"hover_inst"`` for key ``"inst"``); None
            overwrites the mask with its HV maps.
        convention, dtype, min_area: as in :class:`HVMaps`.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        new_key_prefix: str | None = "hover_",
        convention: str = "monai",
        dtype: DTypeLike = np.float32,
        min_area: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = HVMaps(convention=convention, dtype=dtype, min_area=min_area)
        self.new_key_prefix = new_key_prefix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            new_key = key if self.new_key_prefix is None else f"{self.new_key_prefix}{key}"
            d[new_key] = self.transform(d[key])
        return d


class HoVerNetMapsd(MapTransform):
    """Recompute HoVer-Net's training maps (HV, type one-hot) from already-augmented ``inst`` / type keys.

    Writes ``d[hv_key]`` ``(2, H, W)`` from ``d[inst_key]`` and, when ``num_types`` is set,
    ``d[type_one_hot_key]`` ``(num_types, H, W)`` float32 from ``d[type_key]`` (channel ``k - 1`` =
    type ``k``). Place it after the spatial transforms; the keys default to those of
    ``Sample.to_dict()`` (``inst``, and ``label`` for the type map).

    Args:
        inst_key: key of the ``(1, H, W)`` instance mask.
        type_key: key of the ``(1, H, W)`` type map; used only when ``num_types`` is set.
        num_types: number of nucleus types T; None writes no one-hot.
        hv_key: output key of the HV maps.
        type_one_hot_key: output key of the one-hot type map.
        convention, dtype, min_area: as in :class:`HVMaps`.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Example:
        >>> from monai.transforms import Compose, RandFlipd
        >>> pipeline = Compose([RandFlipd(["image", "inst", "label"], prob=0.5, spatial_axis=1),
        ...                     HoVerNetMapsd(num_types=4)])
    """

    def __init__(
        self,
        inst_key: str = "inst",
        type_key: str = "label",
        *,
        num_types: int | None = None,
        hv_key: str = "hv",
        type_one_hot_key: str = "type_one_hot",
        convention: str = "monai",
        dtype: DTypeLike = np.float32,
        min_area: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        keys = [inst_key] if num_types is None else [inst_key, type_key]
        super().__init__(keys, allow_missing_keys)
        if num_types is not None:
            type_one_hot(np.zeros((1, 1), np.uint8), num_types)  # validate num_types now, not per sample
        self.inst_key, self.type_key, self.num_types = inst_key, type_key, num_types
        self.hv_key, self.type_one_hot_key = hv_key, type_one_hot_key
        self.hv = HVMaps(convention=convention, dtype=dtype, min_area=min_area)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if key == self.inst_key:
                d[self.hv_key] = self.hv(d[key])
            else:
                types = _label_array(d[key], self.type_key, channel_axis=0)
                one_hot = type_one_hot(types, self.num_types)
                d[self.type_one_hot_key] = convert_to_dst_type(one_hot, d[key], dtype=one_hot.dtype)[0]
        return d


class AlbumentationsHoVerNetMaps(A.BasicTransform):
    """albumentations step that adds HV maps (and type one-hot) computed from the augmented masks.

    Put it last in an ``A.Compose``, after the geometry. It changes no existing target: it reads
    the instance mask ``data[inst_key]`` (``mask`` by default; register other names with
    ``additional_targets={"inst": "mask"}`` so geometry reaches them) and adds HWC float arrays,
    the layout albumentations uses for masks: ``data[hv_key]`` ``(H, W, 2)`` ``[h, v]`` and, with
    ``num_types``, ``data[type_one_hot_key]`` ``(H, W, T)`` from ``data[type_key]``. ``ToTensorV2``
    does not transpose these new keys; use ``np.moveaxis(out["hv"], -1, 0)`` for CHW.

    Always applied (``p=1``): a map generator that sometimes skips would leave stale maps.

    Args:
        inst_key: key of the ``(H, W)`` instance mask.
        type_key: key of the ``(H, W)`` type map; used only when ``num_types`` is set.
        num_types: number of nucleus types T; None writes no one-hot.
        hv_key, type_one_hot_key: output keys.
        convention, dtype, min_area: as in :class:`HVMaps`.

    Example:
        >>> import albumentations as A
        >>> image, inst = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int32)
        >>> inst[2:5, 1:7] = 4
        >>> pipeline = A.Compose([A.HorizontalFlip(), A.RandomRotate90(), AlbumentationsHoVerNetMaps()])
        >>> out = pipeline(image=image, mask=inst)
        >>> out["hv"].shape, out["hv"].dtype
        ((8, 8, 2), dtype('float32'))
    """

    def __init__(
        self,
        inst_key: str = "mask",
        type_key: str = "types",
        num_types: int | None = None,
        hv_key: str = "hv",
        type_one_hot_key: str = "type_one_hot",
        convention: str = "monai",
        dtype: DTypeLike = np.float32,
        min_area: int = 0,
    ) -> None:
        super().__init__(p=1.0)
        if num_types is not None:
            type_one_hot(np.zeros((1, 1), np.uint8), num_types)
        self.inst_key, self.type_key, self.num_types = inst_key, type_key, num_types
        self.hv_key, self.type_one_hot_key = hv_key, type_one_hot_key
        self.convention, self.dtype, self.min_area = convention, dtype, min_area
        self._hv = HVMaps(convention=convention, dtype=dtype, min_area=min_area)

    @property
    def targets(self) -> dict[str, Any]:
        return {}  # existing targets pass through untouched

    @property
    def targets_as_params(self) -> list[str]:
        return [self.inst_key] + ([self.type_key] if self.num_types is not None else [])

    def update_transform_params(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return params  # needs no image shape (the base class would require an `image` key)

    def apply_with_params(self, params: dict[str, Any], *args: Any, **data: Any) -> dict[str, Any]:
        out = dict(data)
        inst = _label_array(data[self.inst_key], self.inst_key, channel_axis=-1)
        out[self.hv_key] = np.moveaxis(self._hv(inst), 0, -1)
        if self.num_types is not None:
            types = _label_array(data[self.type_key], self.type_key, channel_axis=-1)
            out[self.type_one_hot_key] = np.moveaxis(type_one_hot(types, self.num_types), 0, -1)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("inst_key", "type_key", "num_types", "hv_key", "type_one_hot_key", "convention", "min_area")
