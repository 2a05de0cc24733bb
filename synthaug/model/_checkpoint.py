"""Resumable checkpoints: accelerate's own state plus the EMA weights (safetensors) and the step (JSON).

accelerate writes the model as safetensors but its optimizer/scheduler/RNG states with
``torch.save``; those files only ever resume the run that wrote them. The EMA and the step, which
are ours, are safetensors + JSON.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints``, or None."""
    found = sorted((output_dir / "checkpoints").glob("checkpoint-*"))
    found = [p for p in found if (p / "trainer_state.json").is_file()]  # complete checkpoints only
    return found[-1] if found else None


def save_checkpoint(
    accelerator: Accelerator, ema: EMAModel, output_dir: Path, step: int, keep: int, micro_batches: int
) -> None:
    """accelerate's state + the EMA as safetensors/JSON; keeps the newest ``keep`` checkpoints.

    ``micro_batches`` (drawn so far) tells a resumed run where in the data order to continue.
    """
    path = output_dir / "checkpoints" / f"checkpoint-{step:06d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        state = ema.state_dict()
        shadow = state.pop("shadow_params")
        save_file(
            {str(i): p.detach().cpu().contiguous() for i, p in enumerate(shadow)}, path / "ema.safetensors"
        )
        (path / "ema.json").write_text(json.dumps(state))
        # Written last: its presence marks the checkpoint complete.
        (path / "trainer_state.json").write_text(json.dumps({"step": step, "micro_batches": micro_batches}))
        old = sorted((output_dir / "checkpoints").glob("checkpoint-*"))[:-keep]
        for stale in old:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, ema: EMAModel, path: Path) -> dict:
    """Restore model, optimiser, LR scheduler, RNG and EMA; returns the trainer state (``step``,
    ``micro_batches`` where recorded)."""
    accelerator.load_state(str(path))
    tensors = load_file(path / "ema.safetensors")
    state = json.loads((path / "ema.json").read_text())
    state["shadow_params"] = [tensors[str(i)] for i in range(len(tensors))]
    ema.load_state_dict(state)
    ema.to(accelerator.device)
    return json.loads((path / "trainer_state.json").read_text())
