"""Sampling throughput: a naive DDPM loop vs the default MSDMPipeline, and the zarr cache write rate.

Measured in one run on the same model, masks and device:

- **naive**: fp32, eager, one tile at a time, DDPM with 1000 steps, guidance as one separate forward
  per guided modality. Running 1000 steps is pointless for a rate, so a few steps are timed after a
  warm-up and the per-step cost is extrapolated to 1000 steps (printed as such).
- **default**: ``MSDMPipeline`` with DPM-Solver++ (``--steps``, log-SNR-spaced timesteps), the same
  guidance batched into one forward, a batch of tiles, ``channels_last`` weights, bf16 autocast
  where the device computes bf16 natively (CUDA; CPUs with AMX-BF16 / AVX512-BF16), then the same
  pipeline once more in fp32 to show what the autocast buys.
- **cache**: pairs/s written into a local ``SyntheticCache`` (commit per batch), to check the store
  is never the bottleneck.

On CUDA it also reports the achieved TFLOP/s of the default pipeline (FLOPs counted with
``torch.utils.flop_counter``) against a measured bf16 matmul ceiling.

    python benchmarks/bench_sampling.py --quick            # CPU, tiny model, 32 px: seconds
    python benchmarks/bench_sampling.py --model consep --no-guidance --steps 15 --batch-size 4
                                                           # the shipped model at 256 px
    python benchmarks/bench_sampling.py --size 256         # GPU: the base preset at 256 px
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthaug.model import MSDM, TextEmbeddingCache, make_noise_scheduler
from synthaug.model.train import resolve_mixed_precision
from synthaug.sampling.cache import SyntheticCache
from synthaug.sampling.mask_sources import LayoutMaskSource
from synthaug.sampling.pipeline import DEFAULT_GUIDANCE, MSDMPipeline, load_pipeline, make_scheduler

COLOUR = np.array([0.35, 0.2, 0.5, 0.9, 0.75, 0.85], np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive_seconds_per_step(
    model, text_cache, masks, device, *, measured_steps: int, guidance: dict, config: dict
) -> float:
    """Seconds of one DDPM step for ONE tile with guidance as separate forwards (fp32, eager)."""
    pipe = MSDMPipeline(model, make_scheduler("ddpm", config), text_cache).to(device)
    record = masks[0]
    cond = pipe.encode_conditions([record.inst], [record.types], [None], [COLOUR], device)
    text, text_mask, _ = pipe.encode_text([record.meta], device)
    colour = torch.from_numpy(COLOUR[None]).to(device)
    latents = torch.randn(1, 3, *record.inst.shape, device=device)
    pipe.scheduler.set_timesteps(1000)
    guided = [m for m, w in guidance.items() if w != 1.0]

    def step(t):
        nonlocal latents
        with torch.no_grad():
            full = model(latents, t, cond, text, text_mask, colour).sample
            eps = full.clone()
            for m in guided:  # one more forward per guided modality
                drop = {m: torch.ones(1, dtype=torch.bool, device=device)}
                without = model(latents, t, cond, text, text_mask, colour, drop=drop).sample
                eps += (guidance[m] - 1) * (full - without)
            latents = pipe.scheduler.step(eps, t, latents).prev_sample

    timesteps = pipe.scheduler.timesteps
    step(timesteps[0])  # warm-up
    _sync(device)
    start = time.perf_counter()
    for t in timesteps[1 : 1 + measured_steps]:
        step(t)
    _sync(device)
    return (time.perf_counter() - start) / measured_steps


def pipeline_rate(
    pipe, masks, device, *, batch_size: int, steps: int, repeats: int, guidance: dict
) -> tuple[float, float]:
    """``(pairs/s, FLOPs per batch)`` of the default pipeline on batches of ``batch_size`` tiles."""
    records = [masks[i] for i in range(batch_size)]
    kwargs = {
        "type_map": [r.types for r in records], "colour": np.stack([COLOUR] * batch_size),
        "meta": [r.meta for r in records],
        "guidance": guidance, "num_inference_steps": steps,
    }
    insts = [r.inst for r in records]

    def call():
        gens = [torch.Generator().manual_seed(i) for i in range(batch_size)]
        return pipe(insts, generator=gens, **kwargs)

    call()  # warm-up (and compilation, when enabled)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    _sync(device)
    rate = repeats * batch_size / (time.perf_counter() - start)
    flops = 0.0
    if device.type == "cuda":
        with FlopCounterMode(display=False) as counter:
            call()
        flops = float(counter.get_total_flops())
    return rate, flops


def cache_write_rate(masks, size: int, *, batch_size: int, num_samples: int) -> float:
    """Pairs/s written (and committed per batch) into a local store, images incompressible noise."""
    rng = np.random.default_rng(0)
    records = [masks[i] for i in range(batch_size)]
    inst = np.stack([r.inst for r in records])
    types = np.stack([r.types for r in records])
    with tempfile.TemporaryDirectory() as tmp:
        cache = SyntheticCache.create(f"{tmp}/bench.zarr", height=size, width=size, num_types=4)
        images = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
        start = time.perf_counter()
        for _ in range(num_samples // batch_size):
            cache.append(image=images, inst=inst, type=types, meta=[{"seed": [0, 0]}] * batch_size)
        return (num_samples // batch_size) * batch_size / (time.perf_counter() - start)


def bf16_matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model at 32 px (CPU, seconds)")
    parser.add_argument("--size", type=int, default=None, help="tile size (default 256; --quick 32)")
    parser.add_argument("--preset", default=None, help="MSDM preset (default base; --quick tiny)")
    parser.add_argument("--model", default=None, help="a trained model (shipped name or run folder) "
                        "instead of a randomly initialised --preset")
    parser.add_argument("--no-guidance", action="store_true", help="all guidance weights 1 (both loops)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    parser.add_argument("--steps", type=int, default=25, help="default-pipeline steps")
    parser.add_argument("--naive-steps", type=int, default=3, help="DDPM steps timed for the extrapolation")
    parser.add_argument("--repeats", type=int, default=2, help="timed pipeline calls")
    parser.add_argument("--cache-samples", type=int, default=None, help="pairs written for the cache rate")
    parser.add_argument("--compile", action="store_true", help="torch.compile the default pipeline's model")
    parser.add_argument(
        "--compare", type=lambda v: [p for p in v.split(",") if p], default=[],
        help="comma list of fast paths also timed in the same run on top of the default pipeline: "
        "contiguous (weights not channels_last), compile (one row each; a path that fails is "
        "reported, not hidden)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = args.size or (32 if args.quick else 256)
    preset = args.preset or ("tiny" if args.quick else "base")
    batch = args.batch_size or (64 if device.type == "cuda" else 8)
    cache_samples = args.cache_samples or max(4 * batch, 64)
    torch.manual_seed(0)
    guidance = {m: 1.0 for m in DEFAULT_GUIDANCE} if args.no_guidance else dict(DEFAULT_GUIDANCE)
    if args.model:
        # Contiguous weights for the naive loop; the default pipeline turns channels_last below.
        pipe = load_pipeline(args.model, device=device, channels_last=False)
        model, text_cache, preset = pipe.model, pipe.text_cache, args.model
        config = dict(pipe.scheduler.config)
    else:
        model = MSDM.from_preset(preset, sample_size=size).eval().to(device)
        text_cache = TextEmbeddingCache()  # BERT runs once per distinct prompt, outside the timings
        config = dict(make_noise_scheduler().config)
        pipe = MSDMPipeline(model, make_scheduler("dpm", config), text_cache).to(device)
    masks = LayoutMaskSource(size, size, seed=0, size=min(1.0, size / 128), meta={"tissue": "colon"})

    naive_step = naive_seconds_per_step(
        model, text_cache, masks, device, measured_steps=args.naive_steps, guidance=guidance, config=config
    )
    naive_rate = 1.0 / (naive_step * 1000)
    pipe.enable_fast_inference(channels_last=True, compile=args.compile)  # as load_pipeline does
    default_rate, flops = pipeline_rate(
        pipe, masks, device, batch_size=batch, steps=args.steps, repeats=args.repeats, guidance=guidance
    )
    precision = resolve_mixed_precision(pipe.mixed_precision, device)
    fp32_rate = None
    if precision != "no":  # what the mixed precision buys, in the same run
        pipe.mixed_precision = "no"
        fp32_rate, _ = pipeline_rate(
            pipe, masks, device, batch_size=batch, steps=args.steps, repeats=args.repeats, guidance=guidance
        )
        pipe.mixed_precision = "auto"
    fast_paths = {}
    unknown = set(args.compare) - {"contiguous", "compile"}
    if unknown:
        raise SystemExit(f"--compare: unknown paths {sorted(unknown)}; choose contiguous, compile")
    for name in args.compare:  # each beside the default, in this run, so the ratios compare
        # A fresh pipeline for a shipped model (the default one stays as it is); the same one
        # otherwise (its weights are random anyway).
        trial = load_pipeline(args.model, device=device) if args.model else pipe
        try:
            if name == "contiguous":  # what channels_last buys
                trial.model.to(memory_format=torch.contiguous_format)
            else:
                trial.enable_fast_inference(compile=True)
            fast_paths[name], _ = pipeline_rate(
                trial, masks, device, batch_size=batch, steps=args.steps, repeats=args.repeats,
                guidance=guidance,
            )
        except Exception as err:  # noqa: BLE001 - a failing path is a result to report
            fast_paths[name] = f"failed: {type(err).__name__}: {err}"[:300]
    write_rate = cache_write_rate(masks, size, batch_size=batch, num_samples=cache_samples)

    hardware = (
        torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"{os.cpu_count()}-core {platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)"
    )
    rows = [
        ("naive: fp32 eager DDPM-1000, 1 tile, guidance unbatched*", naive_rate, 1.0),
        (f"default: DPM-Solver++ {args.steps} steps, guidance batched, batch {batch}, {precision}",
         default_rate, default_rate / naive_rate),
        *([("  the same in fp32", fp32_rate, fp32_rate / naive_rate)] if fp32_rate else []),
        *[(f"  the same, {k}", v, v / naive_rate) for k, v in fast_paths.items() if isinstance(v, float)],
        (f"cache write (zarr, local, batch {batch})", write_rate, write_rate / naive_rate),
    ]
    print(f"\nMSDM '{preset}' at {size}x{size} on {hardware}")
    print(f"{'':62s} {'pairs/s':>10s} {'x naive':>9s}")
    for name, rate, ratio in rows:
        print(f"{name:62s} {rate:10.3g} {ratio:9.1f}")
    print(f"* {args.naive_steps} DDPM steps timed ({naive_step * 1e3:.1f} ms/step), extrapolated to 1000.")
    for name, outcome in fast_paths.items():
        if isinstance(outcome, float):
            print(f"{name}: {outcome / default_rate:.2f}x the default pipeline")
        else:
            print(f"{name}: {outcome}")
    print(f"cache write rate / default pipeline rate: {write_rate / default_rate:.0f}x")
    record = {
        "benchmark": "bench_sampling", "hardware": hardware, "device": device.type, "preset": preset,
        "size": size, "batch_size": batch, "steps": args.steps, "guidance": guidance,
        "naive_pairs_per_s": naive_rate, "naive_seconds_per_step": naive_step,
        "naive_steps_measured": args.naive_steps, "default_pairs_per_s": default_rate,
        "speedup": default_rate / naive_rate, "cache_write_pairs_per_s": write_rate,
        "mixed_precision": precision, "default_fp32_pairs_per_s": fp32_rate,
        "fast_paths_pairs_per_s": fast_paths or None,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        ceiling = bf16_matmul_tflops(device)
        achieved = flops * default_rate / batch / 1e12
        print(f"achieved {achieved:.1f} TFLOP/s vs measured bf16 matmul ceiling {ceiling:.0f} TFLOP/s "
              f"({100 * achieved / ceiling:.0f}%)")
        record |= {"achieved_tflops": achieved, "bf16_matmul_tflops": ceiling}
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bench_sampling_{device.type}_{Path(str(preset)).name}_{size}px.json"
    (args.out / name).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
