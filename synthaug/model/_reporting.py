"""Training artefacts: the JSON-lines loss log, the loss-curve PNG and the periodic sample grids (PNG)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from matplotlib.figure import Figure  # not pyplot: the caller's backend and pyplot state stay as they are

from synthaug.model.dataset import MSDMTrainDataset, mask_available
from synthaug.model.sampler import sample_unguided
from synthaug.viz import overlay_instances


def read_loss_log(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and losses from ``loss.jsonl``; a resumed run re-logs steps, the latest entry wins."""
    by_step: dict[int, float] = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_step[int(record["step"])] = float(record["loss"])
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def save_loss_curve(log_path: str | Path, png_path: str | Path) -> Path:
    """Raw loss per step and a moving average, log-scaled."""
    steps, losses = read_loss_log(log_path)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    window = max(1, min(50, len(losses) // 10))
    if len(losses) >= window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("diffusion MSE")
    if len(losses) and losses.min() > 0:
        ax.set_yscale("log")
    ax.legend(frameon=False)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    return png_path


def save_sample_grid(
    path: str | Path,
    generated: Sequence[np.ndarray],
    real: Sequence[np.ndarray],
    insts: Sequence[np.ndarray],
    types: Sequence[np.ndarray],
    *,
    has_mask: Sequence[bool] | None = None,
    title: str = "",
) -> Path:
    """One row per mask: generated | real | mask outlines on the generated image.

    ``has_mask[i]`` False marks a label-level sample (generated without spatial conditions); by
    default every row has a mask, possibly one without nuclei.
    """
    n = len(generated)
    fig = Figure(figsize=(6.6, 2.2 * n + 0.4))
    axes = fig.subplots(n, 3, squeeze=False)
    for row in range(n):
        masked = True if has_mask is None else bool(has_mask[row])
        overlay = overlay_instances(generated[row], insts[row], types[row]) if masked else generated[row]
        panels = (generated[row], real[row], overlay)
        names = ("generated", "real", "mask on generated" if masked else "no mask (label-level)")
        for col, (panel, name) in enumerate(zip(panels, names)):
            axes[row, col].imshow(panel)
            axes[row, col].set_title(name, fontsize=8)
            axes[row, col].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


class GridMaker:
    """Fixed centre crops of a few samples, sampled with the EMA weights at intervals."""

    def __init__(self, samples, config, channels, text_ids, text_table, text_mask_table):
        idx = np.unique(
            np.linspace(0, len(samples) - 1, min(config.num_grid_samples, len(samples))).astype(int)
        )
        has_mask = mask_available(samples)
        self.dataset = MSDMTrainDataset(
            [samples[i] for i in idx],
            channels=channels,
            resolution=config.resolution,
            text_ids=[text_ids[i] for i in idx],
            augment=False,
            has_mask=[has_mask[i] for i in idx],
        )
        self.crops = [self.dataset.crop(i) for i in range(len(idx))]
        self.text_table, self.text_mask_table = text_table, text_mask_table
        self.config = config

    def __call__(self, model, ema: EMAModel, scheduler_config, path: Path, step: int) -> Path:
        items = [self.dataset[i] for i in range(len(self.dataset))]
        device = next(model.parameters()).device
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        was_training = model.training
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        model.eval()
        try:
            images = sample_unguided(
                model,
                scheduler_config,
                batch["conditions"],
                self.text_table[batch["text_id"]],
                self.text_mask_table[batch["text_id"]],
                batch["colour"],
                drop={"mask": ~batch["has_mask"]},
                num_inference_steps=self.config.grid_inference_steps,
                generator=torch.Generator().manual_seed(self.config.seed),
            )
        finally:
            ema.restore(model.parameters())
            model.train(was_training)
        generated = ((images.float().cpu().permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
        real, insts, types = zip(*self.crops)
        return save_sample_grid(
            path,
            list(generated),
            real,
            insts,
            types,
            has_mask=self.dataset.has_mask,
            title=f"EMA weights, step {step}",
        )
