"""Training throughput: the CPU recipe against the previous default ``synthaug train`` loop.

Both arms run the real ``train_msdm`` loop (accelerate, EMA, data loader, loss weighting) on the
same data at the same crop and batch, one after the other in one process, for ``--steps`` steps
after ``--warmup`` discarded ones; images/s = timed steps x batch / seconds.

- **previous default**: the ``small`` preset (the default before the CPU recipe), fp32;
- **recipe**: the ``cpu`` preset (6-M parameters, attention at the coarsest level only) with
  ``mixed_precision="auto"`` (bf16 only where the CPU computes it natively, AMX/AVX512-BF16).

    python benchmarks/bench_training.py                      # CoNSeP train split, 64-px crops
    python benchmarks/bench_training.py --quick              # toy tiles: seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, device_description, git_commit, write_json  # noqa: E402


def images_per_second(samples, *, size: str, precision: str, resolution: int, batch: int,
                      steps: int, warmup: int) -> dict:
    """Run ``train_msdm`` twice (warm-up steps, then warm-up + timed steps) and difference them,
    so model building, text encoding and export are not counted."""
    from synthaug.conditions import ConditionChannels
    from synthaug.model import TrainConfig, train_msdm
    from synthaug.model.train import resolve_mixed_precision

    seconds = {}
    for total in (warmup, warmup + steps):
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(
                output_dir=tmp, resolution=resolution, batch_size=batch, steps=total, model_size=size,
                mixed_precision=precision, checkpoint_every=0, export_every=0, sample_every=0,
                condition_channels=ConditionChannels(num_types=4), seed=0,
            )
            start = time.perf_counter()
            train_msdm(config, samples)
            seconds[total] = time.perf_counter() - start
    timed = seconds[warmup + steps] - seconds[warmup]
    return {"preset": size, "mixed_precision": resolve_mixed_precision(precision),
            "images_per_s": steps * batch / timed, "timed_seconds": timed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="toy tiles, 32 px, 3 steps")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        from synthaug.data.toy import make_toy_samples

        samples, args.resolution, args.steps, args.warmup = make_toy_samples(8, 32, 32, seed=0), 32, 3, 1
        data = "toy tiles"
    else:
        from synthaug.data import open_dataset

        samples, data = open_dataset(args.data).load("train"), f"{args.data.name} train split"
    common = dict(resolution=args.resolution, batch=args.batch_size, steps=args.steps, warmup=args.warmup)
    arms = {
        "previous default (small, fp32)": images_per_second(samples, size="small", precision="no", **common),
        "recipe (cpu, auto precision)": images_per_second(samples, size="cpu", precision="auto", **common),
    }
    base = arms["previous default (small, fp32)"]["images_per_s"]
    print(f"\ntraining images/s, {data}, {args.resolution}-px crops, batch {args.batch_size}, "
          f"{device_description('cpu')}")
    for name, arm in arms.items():
        print(f"{name:34s} {arm['images_per_s']:8.2f} img/s  {arm['images_per_s'] / base:5.2f}x "
              f"({arm['mixed_precision']})")
    record = {"benchmark": "bench_training", "data": data, "resolution": args.resolution,
              "batch_size": args.batch_size, "steps": args.steps, "arms": arms,
              "device": device_description("cpu"), "commit": git_commit(), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d")}
    path = write_json(args.out / f"bench_training_{args.resolution}px.json", record)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
