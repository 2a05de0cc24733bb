"""Segmenter speed: NHWC (``channels_last``, the default) against plain NCHW weights, same run.

Times what one step of ``train_segmenter`` computes (forward, ``HoVerNetLoss``, backward, AdamW) on
real CoNSeP training batches drawn through the same transform and collate as training, and the
sliding-window forward of ``predict_nuclei`` on a stitched 1024x1024 test tile. Both memory formats
run in one process on the same batches, interleaved round by round, so load on a shared machine hits
both alike; the median of the timed rounds is reported. The loader's own cost per batch (crop, flips,
HV targets) is timed once: it is the same in both arms.

    python benchmarks/bench_segmenter.py                   # CoNSeP, 128-px crops, batch 8
    python benchmarks/bench_segmenter.py --quick           # toy tiles, a few rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, device_description, git_commit, write_json  # noqa: E402

FORMATS = {"NCHW (contiguous)": False, "NHWC (channels_last, default)": True}


def load_data(args):
    if args.quick or not args.data.is_dir():
        from synthaug.data import make_toy_samples

        samples = make_toy_samples(8, 128, 128, seed=0)
        return samples, samples[0].image, {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    from synthaug.data import open_dataset

    reader = open_dataset(args.data)
    tile = reader.stitch_tile("test", sorted({s.group for s in reader.load("test")})[0])
    return reader.load("train"), tile.image, reader.type_names


def batches(samples, type_names, *, crop: int, batch: int, count: int) -> tuple[list[dict], float]:
    """``count`` training batches through the real transform + collate, and the seconds per batch."""
    from synthaug.segment.train import collate_batch, training_transform

    transform = training_transform(crop, seed=0)
    rng = np.random.default_rng(0)
    out, start = [], time.perf_counter()
    for _ in range(count):
        items = [transform(samples[i].to_dict()) for i in rng.integers(len(samples), size=batch)]
        out.append(collate_batch(items, len(type_names)))
    return out, (time.perf_counter() - start) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds per format")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_segmenter.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.crop, args.batch_size, args.rounds, args.warmup = 64, 2, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from monai.apps.pathology.losses import HoVerNetLoss

    from synthaug.segment import NucleiSegmenter, SegmenterConfig
    from synthaug.segment.model import HV, NP, TP
    from synthaug.segment.predict import network_outputs

    samples, tile, names = load_data(args)
    data, loader_seconds = batches(
        samples, names, crop=args.crop, batch=args.batch_size, count=args.warmup + args.rounds
    )
    models, optimisers = {}, {}
    for label, channels_last in FORMATS.items():
        torch.manual_seed(0)
        models[label] = NucleiSegmenter(SegmenterConfig(names), channels_last=channels_last)
        optimisers[label] = torch.optim.AdamW(models[label].parameters(), lr=1e-3)
    loss_fn = HoVerNetLoss()
    step_times: dict[str, list[float]] = {label: [] for label in FORMATS}
    for round_index, batch in enumerate(data):
        for label, model in models.items():
            model.train()
            start = time.perf_counter()
            loss = loss_fn(model(batch["image"]), {k: batch[k] for k in (NP, HV, TP)})
            optimisers[label].zero_grad(set_to_none=True)
            loss.backward()
            optimisers[label].step()
            if round_index >= args.warmup:
                step_times[label].append(time.perf_counter() - start)
    predict_seconds = {}
    for label, model in models.items():
        # one forward pass per window (no test-time flips): the memory format is what is compared
        network_outputs(model, tile[:256, :256], tta=False)  # warm-up
        start = time.perf_counter()
        network_outputs(model, tile, tta=False)
        predict_seconds[label] = time.perf_counter() - start

    base = statistics.median(step_times["NCHW (contiguous)"])
    rows = []
    print(f"{device_description('cpu')}; {args.batch_size} crops of {args.crop} px per step; "
          f"loader {loader_seconds * 1000:.0f} ms/batch (same in both)")
    header = ("memory format", "train step ms", "x NCHW", "predict tile s", "x NCHW")
    print(f"{header[0]:32s} {header[1]:>14s} {header[2]:>7s} {header[3]:>15s} {header[4]:>7s}")
    for label in FORMATS:
        median = statistics.median(step_times[label])
        row = {
            "format": label,
            "train_step_ms": 1000 * median,
            "train_speedup": base / median,
            "predict_tile_s": predict_seconds[label],
            "predict_speedup": predict_seconds["NCHW (contiguous)"] / predict_seconds[label],
        }
        rows.append(row)
        print(f"{label:32s} {row['train_step_ms']:14.1f} {row['train_speedup']:7.2f} "
              f"{row['predict_tile_s']:15.2f} {row['predict_speedup']:7.2f}")
    if not args.quick:
        write_json(args.out, {
            "benchmark": "bench_segmenter", "command": " ".join(sys.argv), "commit": git_commit(),
            "device": device_description("cpu"), "date": time.strftime("%Y-%m-%d"),
            "crop": args.crop, "batch_size": args.batch_size, "rounds": args.rounds,
            "tile_shape": list(tile.shape), "loader_ms_per_batch": 1000 * loader_seconds, "rows": rows,
        })
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
