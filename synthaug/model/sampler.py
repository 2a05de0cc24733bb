"""The one denoising loop: schedulers built from the training schedule, their timesteps, the loop.

``synthaug.sampling.MSDMPipeline`` (guidance, masks, output types) and the training-time sample
grids both sample through :func:`denoise`, so what a training grid shows is what users get.

Timesteps are spaced uniformly in log-SNR from the last training step (t=999, pure noise) down to
t=0. Uniform-in-t spacing ("trailing") leaves the last step from t~100 to 0, far too coarse where
fine texture forms: with the exact denoiser of Gaussian toy data it lost 35 % of the pixel std at
10 DPM-Solver++ steps, against 4 % for this spacing (``tests/sampling/test_oracle_sampler.py``).
It also gives the high-noise end the steps that form a 256-px tile's overall brightness.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from synthaug._validation import check_choice, check_int

# name -> (class, options). "ddim" is DPM-Solver++ of order 1, which is exactly the DDIM update
# (Lu et al. 2022, DPM-Solver++, sec. 4) but, unlike diffusers' DDIMScheduler, takes any timesteps.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "dpm": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "ddim": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 1}),
    "ddpm": (DDPMScheduler, {}),
}


def make_scheduler(
    name: str, config: Mapping[str, Any], *, prediction_type: str | None = None
) -> SchedulerMixin:
    """A sampling scheduler built from the training scheduler's config.

    Args:
        name: ``"dpm"`` (DPM-Solver++ 2M, the default), ``"unipc"``, ``"ddim"`` (deterministic,
            first order) or ``"ddpm"`` (ancestral; it needs the ~1000 steps it was trained for).
        config: the training scheduler's ``config`` (betas, timesteps, prediction type).
        prediction_type: the model's ``config.prediction_type``; when given, a scheduler config
            that disagrees is refused instead of silently sampling with the wrong parameterisation.

    Returns:
        The scheduler, sharing the training noise schedule. Sample with :func:`set_sampling_timesteps`
        (as :func:`denoise` does); its own ``set_timesteps`` falls back to trailing spacing.

    Raises:
        ValueError: unknown ``name``, or ``config`` and ``prediction_type`` disagree.
    """
    cls, options = SCHEDULERS[check_choice(name, "name", tuple(SCHEDULERS))]
    if prediction_type is not None:
        saved = dict(config).get("prediction_type", "epsilon")
        if saved != prediction_type:
            raise ValueError(
                f"the scheduler config predicts {saved!r} but the model was trained for "
                f"{prediction_type!r}; build the scheduler from the model's run folder."
            )
    # "trailing" on every path: diffusers' from_config keeps a saved config's "leading", which
    # started DPM/UniPC at t=950 from a saved run, where tile means collapse to grey.
    return cls.from_config(config, timestep_spacing="trailing", **options)


def sampling_timesteps(alphas_cumprod: torch.Tensor, num_inference_steps: int) -> list[int]:
    """``num_inference_steps`` distinct integer timesteps, descending from the last training step
    to 0, as evenly spaced in log-SNR as integer steps allow.

    Args:
        alphas_cumprod: the training schedule's cumulative alphas (``scheduler.alphas_cumprod``).
        num_inference_steps: how many model evaluations, at most ``len(alphas_cumprod)``.
    """
    total = len(alphas_cumprod)
    check_int(num_inference_steps, "num_inference_steps", minimum=1, maximum=total)
    alpha_bar = alphas_cumprod.double().clamp(1e-20, 1 - 1e-12).numpy()
    log_snr = np.log(alpha_bar) - np.log1p(-alpha_bar)  # increasing as t decreases
    targets = np.linspace(log_snr[-1], log_snr[0], num_inference_steps)
    nearest = [int(np.abs(log_snr - target).argmin()) for target in targets]
    # Near t=999 one integer step spans several log-SNR units, so neighbours can round to the
    # same t: keep each strictly below the previous one and leave room for the steps still to come.
    steps: list[int] = []
    for i, t in enumerate(nearest):
        upper = total - 1 if not steps else steps[-1] - 1
        steps.append(max(min(t, upper), num_inference_steps - 1 - i))
    return steps


def set_sampling_timesteps(
    scheduler: SchedulerMixin, num_inference_steps: int, device: torch.device | str | None = None
) -> None:
    """Give ``scheduler`` the :func:`sampling_timesteps` grid (any diffusers scheduler made by
    :func:`make_scheduler`; others without custom-timestep support keep their own spacing)."""
    timesteps = sampling_timesteps(scheduler.alphas_cumprod, num_inference_steps)
    if isinstance(scheduler, UniPCMultistepScheduler):
        # UniPC takes no integer timesteps: set its state up, then swap in the grid and its sigmas
        # the way its own set_timesteps builds them (sigma = sqrt((1 - abar) / abar), final 0).
        scheduler.set_timesteps(num_inference_steps, device=device)
        alpha_bar = scheduler.alphas_cumprod[timesteps].double()
        sigmas = ((1 - alpha_bar) / alpha_bar).sqrt().float()
        final = torch.zeros(1) if scheduler.config.final_sigmas_type == "zero" else sigmas[-1:]
        scheduler.sigmas = torch.cat([sigmas, final])
        scheduler.timesteps = torch.tensor(timesteps, dtype=torch.int64, device=device)
    elif "timesteps" in inspect.signature(scheduler.set_timesteps).parameters:
        scheduler.set_timesteps(device=device, timesteps=timesteps)
    else:
        scheduler.set_timesteps(num_inference_steps, device=device)


def denoise(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: SchedulerMixin,
    shape: tuple[int, ...],
    *,
    num_inference_steps: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Sample from pure noise: ``predict(latents, t)`` returns the model output (in the
    scheduler's prediction type) for the whole batch. Returns the final latents (unclipped).

    The initial noise is drawn on the CPU from ``generator`` (one per sample or one shared) and
    moved, so a seed gives the same tile on any device.
    """
    latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    latents = latents.to(device) * scheduler.init_noise_sigma
    set_sampling_timesteps(scheduler, num_inference_steps, device=device)
    # DDPM draws fresh noise every step: give it the per-sample generators too.
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": generator} if takes_generator else {}
    for t in tqdm(scheduler.timesteps, desc="denoising", disable=not progress, leave=False):
        model_input = scheduler.scale_model_input(latents, t)
        pred = predict(model_input, t).float()
        latents = scheduler.step(pred, t, latents, **extra, return_dict=True).prev_sample
    return latents


@torch.no_grad()
def sample_unguided(
    model: torch.nn.Module,
    scheduler_config: Mapping[str, Any],
    conditions: torch.Tensor,
    text_embeds: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    colour: torch.Tensor | None,
    *,
    drop: dict[str, torch.Tensor] | None = None,
    scheduler: str = "dpm",
    num_inference_steps: int = 25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in [-1, 1] under the full conditions, no guidance: the training
    grids' sampler, the pipeline's default scheduler and loop without its mask handling."""
    sampler = make_scheduler(scheduler, scheduler_config)
    batch, _, height, width = conditions.shape

    def predict(model_input, t):
        return model(model_input, t, conditions, text_embeds, text_mask, colour, drop=drop).sample

    latents = denoise(
        predict,
        sampler,
        (batch, 3, height, width),
        num_inference_steps=num_inference_steps,
        generator=generator,
        device=conditions.device,
    )
    return latents.clamp(-1.0, 1.0)
