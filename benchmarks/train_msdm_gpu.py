"""Train MSDM on CoNSeP within a time budget; report throughput against the device's matmul ceiling.

    python benchmarks/train_msdm_gpu.py                       # GPU: 256 px, "base", bf16, 8 minutes
    python benchmarks/train_msdm_gpu.py --quick               # CPU check: 64 px, "tiny", ~1 minute

Reports, measured in the same run:
- images/s and achieved TFLOP/s (FLOPs of one training step counted with
  ``torch.utils.flop_counter.FlopCounterMode``) against the ceiling of a large ``torch.matmul`` in the
  training dtype (bf16 on GPU);
- how well generated tiles follow their masks: Dice between each test mask and the dark (Otsu) pixels
  of the tile generated for it, against the same Dice on the real tile for that mask.
Writes to ``--out``: a sample grid (generated | real | mask on generated, test-split masks), the loss
curve and a JSON of every number.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu
from torch.utils.flop_counter import FlopCounterMode

from synthaug.conditions import ConditionChannels
from synthaug.data import open_dataset
from synthaug.model import (
    MSDM,
    TextEmbeddingCache,
    TrainConfig,
    diffusion_loss,
    load_msdm,
    make_noise_scheduler,
)
from synthaug.model._reporting import save_sample_grid
from synthaug.model.dataset import MSDMTrainDataset
from synthaug.model.sampler import sample_unguided
from synthaug.model.text import metadata_to_text

ROOT = Path(__file__).resolve().parents[1]


def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best sustained TFLOP/s of an n x n matmul: the practical peak the training step is compared to.

    The best of ``repeats`` timings, so a busy machine lowers the ceiling as little as possible.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * n**3 / best / 1e12


def step_flops(
    config: TrainConfig, channels: ConditionChannels, batch: dict, text: tuple, device: torch.device
) -> int:
    """FLOPs of one forward + backward training step at the benchmark's batch size and resolution."""
    model = MSDM.from_preset(
        config.model_size, condition_channels=channels, sample_size=config.resolution
    ).to(
        device
    )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = diffusion_loss(
                model,
                make_noise_scheduler(config.prediction_type),
                batch["image"],
                batch["conditions"],
                text[0],
                text[1],
                batch["colour"],
            )
        loss.backward()
    return counter.get_total_flops()


def mask_dice(image: np.ndarray, inst: np.ndarray) -> float:
    """Dice between the mask and the tile's dark pixels (Otsu): do nuclei appear where the mask says?"""
    gray = rgb2gray(image)
    dark = gray < threshold_otsu(gray)
    fg = inst > 0
    return float(2 * (dark & fg).sum() / max(dark.sum() + fg.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "consep"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--run-dir", default=None, help="training run folder (default: a temporary one)")
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--size", choices=("tiny", "small", "base"), default="base")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--n-eval", type=int, default=6, help="test masks in the grid and the Dice")
    parser.add_argument(
        "--quick", action="store_true", help="CPU check: tiny model, 64 px, 1 minute, 48 patches"
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        args.minutes, args.resolution, args.size, args.batch_size, args.lr = 1.0, 64, "tiny", 8, 1e-3
    precision = "bf16" if device.type == "cuda" else "no"
    tag = f"{device.type}_{args.size}_{args.resolution}px" + ("_quick" if args.quick else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    reader = open_dataset(args.data, reader="consep")
    train, test = reader.load("train"), reader.load("test")
    if args.quick:
        train = train[:: max(1, len(train) // 48)]
    channels = ConditionChannels(num_types=max(reader.type_names))
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="msdm_bench_"))
    config = TrainConfig(
        output_dir=run_dir,
        resolution=args.resolution,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        steps=10**9,
        mixed_precision=precision,
        checkpoint_every=0,
        sample_every=0,
        model_size=args.size,
        condition_channels=channels,
        lr_warmup_steps=50,
        num_workers=0 if device.type == "cpu" else 6,
        ema_decay=0.995,
        time_budget_minutes=args.minutes,
    )
    cache = TextEmbeddingCache()

    # 1. Ceiling and FLOPs per step, measured before training on the same device.
    ceiling_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    ceiling = matmul_ceiling(
        device, ceiling_dtype, 8192 if device.type == "cuda" else 1024, 10 if device.type == "cuda" else 5
    )
    texts = [metadata_to_text(s.meta) for s in train[: args.batch_size]]
    probe = MSDMTrainDataset(
        train[: args.batch_size],
        channels=channels,
        resolution=args.resolution,
        text_ids=list(range(len(texts))),
        augment=False,
    )
    batch = {
        k: torch.stack([probe[i][k] for i in range(len(probe))]).to(device)
        for k in ("image", "conditions", "colour")
    }
    embeds, mask = cache.encode(texts)
    flops = step_flops(config, channels, batch, (embeds.to(device), mask.to(device)), device)

    # 2. Train within the budget.
    from synthaug.model import train_msdm

    train_msdm(config, train, text_cache=cache)
    summary = json.loads((run_dir / "training_summary.json").read_text())
    steps, seconds = summary["steps_this_session"], summary["seconds_this_session"]
    images_per_s = steps * args.batch_size / seconds
    achieved = flops * steps / seconds / 1e12

    # 3. Generated vs real for the same test masks.
    model = load_msdm(run_dir, expected_channels=channels).to(device)
    picks = [test[i] for i in np.linspace(0, len(test) - 1, args.n_eval).astype(int)]
    texts = [metadata_to_text(s.meta) for s in picks]
    evalset = MSDMTrainDataset(
        picks,
        channels=channels,
        resolution=args.resolution,
        text_ids=list(range(len(picks))),
        augment=False,
        has_mask=[True] * len(picks),  # CoNSeP is annotated: an empty crop is a real empty mask
    )
    items = [evalset[i] for i in range(len(picks))]
    crops = [evalset.crop(i) for i in range(len(picks))]
    embeds, mask = cache.encode(texts)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        images = sample_unguided(
            model,
            json.loads((run_dir / "scheduler" / "scheduler_config.json").read_text()),
            torch.stack([it["conditions"] for it in items]).to(device),
            embeds.to(device),
            mask.to(device),
            torch.stack([it["colour"] for it in items]).to(device),
            num_inference_steps=25 if args.quick else 50,
            generator=torch.Generator().manual_seed(0),
        )
    generated = ((images.float().cpu().permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    real, insts, types = zip(*crops)
    # Dice is undefined for a crop without nuclei; score only the crops that have some.
    scored = [i for i, m in enumerate(insts) if m.any()]
    dice_gen = float(np.mean([mask_dice(generated[i], insts[i]) for i in scored]))
    dice_real = float(np.mean([mask_dice(real[i], insts[i]) for i in scored]))
    save_sample_grid(
        out / f"msdm_samples_{tag}.png",
        list(generated),
        real,
        insts,
        types,
        has_mask=evalset.has_mask,
        title=f"MSDM {args.size}, {steps} steps, test-split masks",
    )
    shutil.copy(run_dir / "loss.png", out / f"msdm_loss_{tag}.png")

    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "model_size": args.size,
        "parameters": summary["parameters"],
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "mixed_precision": precision,
        "train_patches": len(train),
        "steps": steps,
        "train_seconds": seconds,
        "images_per_s": images_per_s,
        "flops_per_step": flops,
        "achieved_tflops": achieved,
        "matmul_ceiling_tflops": ceiling,
        "matmul_ceiling_dtype": str(ceiling_dtype).replace("torch.", ""),
        "mfu": achieved / ceiling,
        "final_loss": summary["final_loss"],
        "mask_dice_generated": dice_gen,
        "mask_dice_real": dice_real,
        "n_eval": len(picks),
        "n_eval_with_nuclei": len(scored),
    }
    (out / f"msdm_train_{tag}.json").write_text(json.dumps(result, indent=1))
    print(
        f"\nMSDM training on CoNSeP, {result['device']}, {args.size} "
        f"({summary['parameters'] / 1e6:.1f} M params), "
        f"{args.resolution} px, batch {args.batch_size}, {precision}, {steps} steps in {seconds:.0f} s"
    )
    print("| metric | MSDM | reference (same run) | ratio |")
    print("|---|---|---|---|")
    print(f"| training throughput | {images_per_s:.2f} images/s | | |")
    print(
        f"| achieved TFLOP/s | {achieved:.3f} "
        f"| {ceiling:.3f} ({result['matmul_ceiling_dtype']} matmul ceiling) "
        f"| {achieved / ceiling:.3f} |"
    )
    print(
        f"| mask Dice of dark pixels | {dice_gen:.3f} (generated) | {dice_real:.3f} (real tile) "
        f"| {dice_gen / max(dice_real, 1e-9):.3f} |"
    )
    print(f"final loss {summary['final_loss']:.4f}; files in {out}")


if __name__ == "__main__":
    main()
