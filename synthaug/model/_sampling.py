"""A minimal DDIM sampler for training-time sample grids.

Deliberately small and private: the product sampler (guidance per modality, mask sources, output
types) is ``synthaug.sampling.MSDMPipeline``, which ``model`` must not import.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor


@torch.no_grad()
def ddim_sample(
    model: torch.nn.Module,
    scheduler_config: dict[str, Any],
    conditions: torch.Tensor,
    text_embeds: torch.Tensor | None,
    text_mask: torch.Tensor | None,
    colour: torch.Tensor | None,
    *,
    drop: dict[str, torch.Tensor] | None = None,
    num_inference_steps: int = 25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in [-1, 1] under the full conditions (no guidance)."""
    # Trailing spacing: start at the last training step, where the model saw pure noise.
    scheduler = DDIMScheduler.from_config(scheduler_config, timestep_spacing="trailing")
    scheduler.set_timesteps(num_inference_steps)
    batch, _, height, width = conditions.shape
    latents = randn_tensor((batch, 3, height, width), generator=generator, device=conditions.device)
    for t in scheduler.timesteps:
        pred = model(latents, t, conditions, text_embeds, text_mask, colour, drop=drop).sample
        latents = scheduler.step(pred.float(), t, latents).prev_sample
    return latents.clamp(-1.0, 1.0)
