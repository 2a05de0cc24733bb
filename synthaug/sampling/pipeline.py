"""``MSDMPipeline``: instance masks + metadata + colour -> synthetic H&E tiles.

Follows diffusers' ``pipeline_ddpm.py``: one class, ``register_modules``, a ``@torch.no_grad()``
``__call__`` in numbered stages. Per-modality classifier-free guidance runs as ONE model forward per
step: the batch is stacked with the full condition plus one copy per guided modality in which that
modality is dropped, and the outputs are combined as

    eps = eps_full + sum_m (w_m - 1) * (eps_full - eps_without_m)

(``w_m = 1`` leaves modality ``m`` as conditioned and costs nothing; ``w_m = 0`` ignores it; ``w_m > 1``
pushes the sample towards it). This is the additive compositional guidance of Liu et al. 2022
("Compositional Visual Generation with Composable Diffusion Models") with the full condition, not
the unconditional output, as the anchor, so the mask stays respected while text/colour are boosted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, SchedulerMixin
from diffusers.utils import BaseOutput

from synthaug._validation import check_choice, check_instance_mask, check_int, default_device
from synthaug.conditions import build_conditions
from synthaug.model import metadata_to_text
from synthaug.model.loading import SCHEDULER_SUBFOLDER, TEXT_CACHE_SUBFOLDER, resolve_model_path
from synthaug.model.sampler import SCHEDULERS, denoise, make_scheduler
from synthaug.model.train import resolve_mixed_precision

__all__ = [
    "DEFAULT_GUIDANCE",
    "MODALITIES",
    "SCHEDULERS",
    "MSDMPipeline",
    "MSDMPipelineOutput",
    "load_pipeline",
    "make_scheduler",
]

MODALITIES = ("mask", "text", "colour")
DEFAULT_GUIDANCE = {"mask": 1.0, "text": 2.0, "colour": 1.5}


@dataclass
class MSDMPipelineOutput(BaseOutput):
    """Output of :class:`MSDMPipeline`.

    Attributes:
        images: ``(B, H, W, 3)`` uint8 (``"np"``), a list of PIL images (``"pil"``) or a
            ``(B, 3, H, W)`` float tensor in [0, 1] (``"pt"``).
    """

    images: np.ndarray | list[PIL.Image.Image] | torch.Tensor


def _as_list(value: Any, n: int, name: str, single: type | tuple[type, ...]) -> list[Any]:
    """One value per sample: broadcast a single value, or check a per-sample sequence's length."""
    if value is None or isinstance(value, single):
        return [value] * n
    if not isinstance(value, Sequence) or len(value) != n:
        raise ValueError(
            f"`{name}` must be a single value or a sequence of {n} (one per mask), got {value!r:.80}."
        )
    return list(value)


class MSDMPipeline(DiffusionPipeline):
    """Sample H&E tiles from an MSDM given instance masks, metadata and colour.

    Args:
        model: a trained ``synthaug.MSDM``.
        scheduler: a diffusers scheduler (see :func:`make_scheduler`).
        text_cache: a ``synthaug.model.TextEmbeddingCache`` (prompt -> frozen BERT tokens).

    Example:
        >>> pipe = MSDMPipeline(model, make_scheduler("dpm", train_scheduler.config), text_cache)
        >>> out = pipe(inst, type_map=types, meta={"tissue": "colon"}, colour=colour,
        ...            generator=torch.Generator().manual_seed(0))
        >>> out.images.shape  # (1, H, W, 3) uint8
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model, scheduler: SchedulerMixin, text_cache=None):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)
        # The text cache is a lookup table, not a diffusers component, so it is kept as a plain
        # attribute (saved beside the model by the training loop).
        self.text_cache = text_cache
        # Autocast of the denoiser, as in training: "auto" is bf16 where the device computes it
        # natively (most GPUs; CPUs with AMX-BF16 / AVX512-BF16), fp32 elsewhere; "no", "bf16", "fp16".
        self.mixed_precision = "auto"

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained`` (model + scheduler), plus the text cache in ``text_cache/``."""
        super().save_pretrained(save_directory, **kwargs)
        if self.text_cache is not None:
            self.text_cache.save(Path(save_directory) / TEXT_CACHE_SUBFOLDER)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> MSDMPipeline:
        """diffusers' ``from_pretrained``; also reloads a saved ``text_cache/`` (BERT stays unloaded)."""
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        text_dir = Path(pretrained_model_name_or_path) / TEXT_CACHE_SUBFOLDER
        if pipe.text_cache is None and text_dir.is_dir():
            from synthaug.model import TextEmbeddingCache

            pipe.text_cache = TextEmbeddingCache.load(text_dir)
        return pipe

    def enable_fast_inference(self, *, channels_last: bool = True, compile: bool = False) -> MSDMPipeline:
        """``channels_last`` weights (faster convolutions on GPUs and on the CPU's oneDNN) and optional
        ``torch.compile``. ``load_pipeline`` sets ``channels_last`` by default."""
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model, fullgraph=False)
        return self

    # 1. Check inputs -------------------------------------------------------------------------
    def check_inputs(self, insts, type_maps, guidance, num_inference_steps, output_type) -> None:
        multiple = self.model.downsample_factor
        sizes = sorted({inst.shape for inst in insts})
        if len(sizes) > 1:
            raise ValueError(f"all masks of a call must share one size, got {sizes}.")
        h, w = sizes[0]
        if h % multiple or w % multiple:
            raise ValueError(
                f"`inst` height and width have to be divisible by {multiple} but are {h}x{w}; "
                "crop or pad the masks."
            )
        for i, type_map in enumerate(type_maps):
            if type_map is not None and np.shape(type_map) != (h, w):
                raise ValueError(f"`type_map` {i} has shape {np.shape(type_map)} but `inst` is {(h, w)}.")
        check_guidance(guidance)
        check_num_inference_steps(num_inference_steps)
        check_choice(output_type, "output_type", ("np", "pil", "pt"))

    # 2. Encode conditions --------------------------------------------------------------------
    def encode_conditions(self, insts, type_maps, inst_types, colours, device) -> torch.Tensor:
        """Spatial conditions ``(B, C, H, W)`` from the masks (``build_conditions`` per mask)."""
        channels = self.model.condition_channels
        # Without a colour the model drops the colour modality, zeroing the colour-map channels
        # itself; any valid placeholder lets build_conditions fill the stack.
        no_colour = np.zeros(6, np.float32)
        conds = [
            build_conditions(
                inst, type_map=tm, inst_types=it, channels=channels, colour=no_colour if col is None else col
            )
            for inst, tm, it, col in zip(insts, type_maps, inst_types, colours)
        ]
        return torch.from_numpy(np.stack(conds)).to(device)

    def encode_text(self, metas, device) -> tuple[torch.Tensor | None, ...]:
        """Frozen BERT tokens of each sample's prompt, their mask, and which samples have no text.

        A sample without metadata, or whose metadata make an empty prompt, gets the learned text
        null (its text is dropped), never the prompt ``""``, which no model was trained on.
        ``(None, None, None)`` when no sample has text.
        """
        texts = [None if m is None else m if isinstance(m, str) else metadata_to_text(m) for m in metas]
        missing = [not text for text in texts]
        if self.text_cache is None or all(missing):
            return None, None, None
        placeholder = next(text for text in texts if text)  # any real prompt: those rows are dropped
        embeds, mask = self.text_cache.encode([text or placeholder for text in texts])
        return embeds.to(device), mask.to(device), torch.tensor(missing, device=device)

    # 3. Denoising loop (synthaug.model.sampler.denoise) --------------------------------------
    def guided_model_output(
        self, model_input, t, conditions, text_embeds, text_mask, colour, guidance, text_missing=None
    ):
        """One forward over ``[full, without m1, without m2, ...]``, combined as in the module docstring.

        ``model_input`` is the scheduler-scaled latents; ``text_missing`` marks samples that get the
        text null in every copy (see :meth:`encode_text`). Returns the guided model output.
        """
        guided = [m for m in MODALITIES if guidance.get(m, 1.0) != 1.0]
        # One modality at weight 0 and the rest at 1 is exactly the prediction without it (e.g. label-
        # level generation, mask ignored): drop it in the full copy instead of paying for a second one.
        ignored = guided if len(guided) == 1 and guidance[guided[0]] == 0.0 else []
        if ignored:
            guided = []
        copies = 1 + len(guided)
        b = model_input.shape[0]

        def stack(x):
            return None if x is None else torch.cat([x] * copies)

        # A modality without input is dropped for every copy; a guided one only in its own copy.
        present = {"mask": conditions, "text": text_embeds, "colour": colour}
        drop = {
            m: torch.full((b * copies,), present[m] is None, dtype=torch.bool, device=model_input.device)
            for m in MODALITIES
        }
        if text_missing is not None:
            drop["text"] |= stack(text_missing)
        for m in ignored:
            drop[m][:] = True
        for j, m in enumerate(guided, start=1):
            drop[m][j * b : (j + 1) * b] = True
        model_input = stack(model_input)
        if next(self.model.parameters()).is_contiguous(memory_format=torch.channels_last):
            model_input = model_input.contiguous(memory_format=torch.channels_last)
        timestep = t.to(model_input.device).expand(b * copies) if torch.is_tensor(t) else t
        out = self.model(
            model_input,
            timestep,
            stack(conditions),
            stack(text_embeds),
            stack(text_mask),
            stack(colour),
            drop=drop,
            return_dict=True,
        ).sample.float()
        full, *without = out.chunk(copies)
        guided_out = full.clone()
        for m, out_without in zip(guided, without):
            guided_out += (guidance[m] - 1.0) * (full - out_without)
        return guided_out

    # 4. Post-process -------------------------------------------------------------------------
    @staticmethod
    def postprocess(latents: torch.Tensor, output_type: str):
        images = ((latents.float() + 1.0) / 2.0).clamp(0, 1)
        if output_type == "pt":
            return images.cpu()
        array = (images * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return array if output_type == "np" else [PIL.Image.fromarray(a) for a in array]

    @torch.no_grad()
    def __call__(
        self,
        inst: np.ndarray | Sequence[np.ndarray],
        *,
        type_map: np.ndarray | Sequence[np.ndarray | None] | None = None,
        inst_types: Mapping[int, int] | Sequence[Mapping[int, int] | None] | None = None,
        meta: Mapping[str, str] | str | Sequence[Mapping[str, str] | str | None] | None = None,
        colour: np.ndarray | Sequence[np.ndarray | None] | None = None,
        guidance: Mapping[str, float] | None = None,
        num_inference_steps: int = 15,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        progress: bool = False,
    ) -> MSDMPipelineOutput | tuple:
        """Generate one tile per instance mask.

        Args:
            inst: an ``(H, W)`` instance mask, an ``(B, H, W)`` stack or a list of masks.
            type_map: per-mask ``(H, W)`` type maps (or one for a single mask); ``None`` = untyped.
            inst_types: per-mask ``{instance id: type}`` (alternative to ``type_map``).
            meta: per-mask metadata (``{"tissue": ..., "assay": ...}``) or prompt strings; ``None``
                drops the text modality for that call.
            colour: per-mask ``(6,)`` fg/bg mean RGB in [0, 1]; ``None`` drops the colour modality.
            guidance: per-modality guidance weights ``{"mask", "text", "colour"}`` (missing = 1,
                i.e. plain conditioning); default ``DEFAULT_GUIDANCE``.
            num_inference_steps: scheduler steps. 15 by default: for the shipped model KID was 0.33 /
                0.17 / 0.17 at 8 / 15 / 25 DPM-Solver++ steps (benchmarks/results/fidelity_consep).
            generator: one ``torch.Generator`` per mask for per-tile reproducibility (or one shared).
            output_type: ``"np"`` (uint8 HWC), ``"pil"`` or ``"pt"`` (float CHW in [0, 1]).
            return_dict: return :class:`MSDMPipelineOutput` rather than a tuple.
            progress: show a tqdm bar over the denoising steps.

        Returns:
            :class:`MSDMPipelineOutput` (or ``(images,)``).

        Raises:
            ValueError / TypeError: invalid masks, sizes, guidance or options (see ``check_inputs``).
        """
        # 1. Check inputs
        if isinstance(inst, np.ndarray) and inst.ndim == 3:
            inst = list(inst)
        masks = inst if isinstance(inst, (list, tuple)) else [inst]
        insts = [check_instance_mask(m, "inst") for m in masks]
        n = len(insts)
        if n == 0:
            raise ValueError("`inst` is empty; pass at least one instance mask.")
        type_maps = _as_list(type_map, n, "type_map", np.ndarray)
        inst_types_ = _as_list(inst_types, n, "inst_types", Mapping)
        metas = _as_list(meta, n, "meta", (Mapping, str))
        if isinstance(colour, np.ndarray) and colour.ndim == 2:  # (B, 6): one row per mask
            colour = list(colour)
        colours = _as_list(colour, n, "colour", np.ndarray)
        guidance = dict(DEFAULT_GUIDANCE if guidance is None else guidance)
        self.check_inputs(insts, type_maps, guidance, num_inference_steps, output_type)
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(
                f"`generator` is a list of {len(generator)} but {n} masks were given; pass one per mask."
            )
        device = self._execution_device

        # 2. Encode conditions
        has_colour = [c is not None for c in colours]
        if any(has_colour) and not all(has_colour):
            raise ValueError("`colour` must be given for every mask of a call or for none.")
        conditions = self.encode_conditions(insts, type_maps, inst_types_, colours, device)
        text_embeds, text_mask, text_missing = self.encode_text(metas, device)
        colour_vec = None
        if all(has_colour):
            colour_vec = torch.as_tensor(np.stack(colours), dtype=torch.float32, device=device)
        # An absent modality is dropped for the whole call, so guiding it would be a wasted copy.
        if text_embeds is None:
            guidance["text"] = 1.0
        if colour_vec is None:
            guidance["colour"] = 1.0

        # 3. Denoising loop
        h, w = insts[0].shape
        # Once per call: MSDM.forward does not validate (it runs every step).
        self.model.check_inputs(
            torch.empty((n, 3, h, w), device=device), conditions, text_embeds, text_mask, colour_vec
        )
        precision = resolve_mixed_precision(check_choice(
            self.mixed_precision, "pipeline.mixed_precision", ("auto", "no", "bf16", "fp16")
        ), device)
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        autocast = torch.autocast(device.type, dtype=dtype, enabled=precision != "no")

        def predict(model_input, t):
            with autocast:
                return self.guided_model_output(
                    model_input, t, conditions, text_embeds, text_mask, colour_vec, guidance, text_missing
                )

        latents = denoise(
            predict,
            self.scheduler,
            (n, 3, h, w),
            num_inference_steps=num_inference_steps,
            generator=generator,
            device=device,
            progress=progress,
        )

        # 4. Post-process
        images = self.postprocess(latents, output_type)
        self.maybe_free_model_hooks()
        return MSDMPipelineOutput(images=images) if return_dict else (images,)


def check_guidance(guidance: Mapping[str, float]) -> None:
    """Raise ``ValueError`` unless ``guidance`` maps known modalities to finite weights >= 0."""
    if not isinstance(guidance, Mapping):
        got = type(guidance).__name__
        raise TypeError(f"`guidance` must be a mapping such as {{'text': 2.0}}, got {got}.")
    unknown = set(guidance) - set(MODALITIES)
    if unknown:
        raise ValueError(f"`guidance` keys must be among {list(MODALITIES)}, got {sorted(unknown)}.")
    for key, value in guidance.items():
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or not math.isfinite(value) or value < 0:
            raise ValueError(f"`guidance[{key!r}]` must be a finite number >= 0, got {value!r}.")


def check_num_inference_steps(steps: int) -> None:
    """Raise ``TypeError`` / ``ValueError`` unless ``steps`` is a positive integer."""
    check_int(steps, "num_inference_steps", minimum=1)


def load_pipeline(
    path: str | Path,
    *,
    scheduler: str = "dpm",
    device: str | torch.device | None = None,
    channels_last: bool = True,
) -> MSDMPipeline:
    """An ``MSDMPipeline`` from a ``train_msdm`` output folder (``model/``, ``scheduler/``, ``text_cache/``).

    Args:
        path: the training run folder; the name of a shipped model (``"consep"``: trained on the
            CoNSeP train split, see its MODEL_CARD.md); or a bare ``save_pretrained`` model folder,
            which then samples with the default training schedule for its prediction type and
            encodes prompts with the model's text encoder.
        scheduler: ``"dpm"`` (default), ``"unipc"``, ``"ddim"`` or ``"ddpm"``; built from the training
            scheduler's config so the noise schedule and prediction type match.
        device: where to run (``None``: ``cuda`` when available).
        channels_last: store the weights ``channels_last`` (``enable_fast_inference``). Not only a
            GPU habit: on a 2-core AMX CPU it sampled the shipped model 1.8-2.1x faster with bf16
            autocast and 1.3x in fp32, images within one grey level (2026-12-04, ``bench_sampling.py``).

    Returns:
        The pipeline on ``device``.

    Raises:
        FileNotFoundError: no model at ``path``.
        ValueError: unknown ``scheduler``.
    """
    from synthaug.model import TextEmbeddingCache, load_msdm, make_noise_scheduler

    check_choice(scheduler, "scheduler", tuple(SCHEDULERS))
    path = resolve_model_path(path)
    # fp32 on the CPU whatever the stored dtype (shipped weights are fp16 to stay small).
    model = load_msdm(path, torch_dtype=torch.float32)
    config = (
        DDPMScheduler.load_config(path / SCHEDULER_SUBFOLDER)
        if (path / SCHEDULER_SUBFOLDER).is_dir()
        else make_noise_scheduler(model.config.prediction_type).config
    )
    text_dir = path / TEXT_CACHE_SUBFOLDER
    if text_dir.is_dir():
        text_cache = TextEmbeddingCache.load(text_dir)
    else:
        text_cache = TextEmbeddingCache(model.config.text_encoder)
    device = default_device(device)
    pipe = MSDMPipeline(
        model, make_scheduler(scheduler, config, prediction_type=model.config.prediction_type), text_cache
    ).to(device)
    return pipe.enable_fast_inference(channels_last=channels_last)
