"""How close are synthetic pairs to held-out real tiles? FID/KID, Wasserstein, coverage, named encoder.

Compares the images of a ``SyntheticCache`` with the real tiles of a held-out split (CoNSeP test by
default), and, as the real alternative measured in the same run, the real *training* tiles with
the same held-out tiles: a synthetic set is as good as real data when its distances match that
reference (ratio ~1). Real tiles are cut to the cache's tile size, so both sides show nuclei at the
same scale. When the cache's per-sample metadata name the real sample whose mask was reused
(``source_meta.mask_origin``) and that sample is held out, the grid shows the two side by side
(such a cache serves fidelity only: it must never train a segmenter scored on that split).

Every metric is named with its encoder ("FID (EfficientNet-Lite0 features)" unless ``--encoder``
points to the standard Inception weights). Per-group sliced Wasserstein distances cover tissue
(when the metadata have it) and the dominant nucleus type of each tile. Writes ``fidelity.json`` and
``grid.png`` (real | synthetic | synthetic mask overlay).

    python benchmarks/fidelity.py --cache runs/cache.zarr --out benchmarks/results/fidelity
    python benchmarks/fidelity.py --quick --out /tmp/fidelity_quick   # toy cache: a smoke test
    python benchmarks/fidelity.py --model consep --out benchmarks/results/fidelity_consep
        # sample the shipped model on every CoNSeP test mask (see _model_fidelity.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, build_toy_cache, device_description, git_commit, write_json  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="the SyntheticCache to evaluate (path or URL)")
    parser.add_argument(
        "--model", help="instead of a cache: sample this MSDM (a run folder or a shipped name, e.g. consep) "
        "on every held-out mask and write summary.json beside fidelity.json"
    )
    parser.add_argument("--scheduler", default="dpm", help="--model: sampler (default dpm)")
    parser.add_argument(
        "--steps", default="auto",
        help="--model: sampler steps, or 'auto' (default): the fewest steps of the quality-vs-steps "
        "curve whose KID is within one KID std of the curve's best",
    )
    parser.add_argument("--no-guidance", action="store_true", help="--model: all guidance weights 1")
    parser.add_argument("--fp32", action="store_true",
                        help="--model: sample in fp32 (default: bf16 autocast on native-bf16 devices)")
    parser.add_argument("--batch", type=int, default=4, help="--model: tiles per pipeline call")
    parser.add_argument(
        "--curve-steps", type=lambda s: [int(v) for v in s.split(",") if v], default=[8, 15, 25],
        help="--model: step counts of the quality-vs-steps curve (default 8,15,25; '' = none)",
    )
    parser.add_argument("--curve-tiles", type=int, default=32, help="--model: tiles per curve point")
    parser.add_argument(
        "--judge", type=Path, default=None,
        help="--model: a trained synthaug.segment segmenter as the mask-faithfulness judge (default: "
        "train one on the reference split into --work-dir/judge, or reuse the one there)",
    )
    parser.add_argument("--judge-steps", type=int, default=1500,
                        help="--model: training steps of the judge (default 1500, the model card's recipe)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "fidelity",
                        help="--model: where the judge segmenter is trained (default runs/fidelity)")
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    parser.add_argument("--split", default="test", help="held-out split of --data (default: test)")
    parser.add_argument("--reference-split", default="train", help="real reference split (default: train)")
    parser.add_argument(
        "--encoder", default="efficientnet-lite0", help="feature extractor name or local path"
    )
    parser.add_argument("--max-samples", type=int, default=None, help="cap per set (default: all; quick 32)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fidelity")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's; quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: toy cache, a few crops")
    args = parser.parse_args(argv)
    if args.cache is None and args.model is None and not args.quick:
        parser.error("--cache STORE or --model NAME is required (--quick: a smoke test on a toy cache).")
    args.max_samples = args.max_samples or (32 if args.quick else None)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # One thread on a small shared CPU: contending OpenMP threads were ~10x slower (see dice benchmark).
    args.threads = args.threads or (1 if args.quick else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def _subsample(items: list, limit: int | None, seed: int = 0) -> list:
    if limit is None or len(items) <= limit:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def _dominant_type(inst_types: dict[int, int], names: dict[int, str]) -> str:
    if not inst_types:
        return "no nuclei"
    type_id, _ = Counter(inst_types.values()).most_common(1)[0]
    return f"{names.get(type_id, type_id)}-rich"


def save_grid(path: Path, rows: list[tuple[np.ndarray, str, dict]], *, title: str,
              type_names: dict[int, str] | None = None) -> Path:
    """Real tile | synthetic tile | synthetic with the mask outlines, in the package's type palette."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthaug.viz import legend_handles, overlay_instances

    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for r, (real_image, real_label, synth) in enumerate(rows):
        panels = [
            (real_image, real_label),
            (synth["image"], "synthetic"),
            (overlay_instances(synth["image"], synth["inst"], synth["type"]), "synthetic + mask outlines"),
        ]
        for c, (image, label) in enumerate(panels):
            axes[r, c].imshow(image)
            axes[r, c].set_title(label, fontsize=7)
            axes[r, c].axis("off")
    fig.suptitle(title, fontsize=8)
    if type_names:
        fig.legend(handles=legend_handles(type_names), loc="lower center", ncol=len(type_names), fontsize=7,
                   frameon=False)
        fig.tight_layout(rect=(0, 0.02, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from synthaug.data import open_dataset, tile_samples
    from synthaug.metrics import load_feature_extractor
    from synthaug.metrics.features import extract_features
    from synthaug.metrics.fidelity import fidelity_from_features, groups_from_labels, metric_name
    from synthaug.sampling.cache import SyntheticCache

    args = parse_args(argv)
    if args.model is not None:
        import _model_fidelity

        return _model_fidelity.run(args)
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    reader = open_dataset(args.data)
    names = dict(reader.type_names)
    held_out_full = reader.load(args.split)
    reference_full = reader.load(args.reference_split)
    if args.cache is None:
        args.cache = f"memory://fidelity-quick-{time.time_ns()}"
        build_toy_cache(args.cache, num_samples=args.max_samples, size=64, seed=0)
        cache_note = "toy layouts + render_toy_tile (SMOKE TEST: not MSDM output)"
    else:
        cache_note = str(args.cache)
    cache = SyntheticCache.open(args.cache)
    size = (cache.height, cache.width)
    # Real tiles at the cache's size, so nuclei have the same scale on both sides.
    held_out = _subsample(tile_samples(held_out_full, size), args.max_samples)
    reference = _subsample(tile_samples(reference_full, size), args.max_samples, seed=1)
    synth_index = _subsample(list(range(len(cache))), args.max_samples, seed=2)
    synth = [cache.read(i) for i in synth_index]
    print(
        f"held-out: {len(held_out)} {args.split} tiles | reference: {len(reference)} {args.reference_split}"
    )
    print(f"synthetic: {len(synth)} from {cache_note}")

    extractor = load_feature_extractor(args.encoder, device=args.device)
    real_f = extract_features([s.image for s in held_out], extractor)
    ref_f = extract_features([s.image for s in reference], extractor)
    synth_f = extract_features([s["image"] for s in synth], extractor)

    def dominant(counts: np.ndarray) -> str:  # counts per type id 1..T
        return f"{names.get(int(counts.argmax()) + 1)}-rich" if counts.sum() else "no nuclei"

    def tissue(meta: dict) -> str | None:
        return meta.get("tissue") or (meta.get("source_meta") or {}).get("tissue")

    def condition_groups(samples_meta: list[dict], dominant_types: list[str]) -> dict:
        real_types = [_dominant_type(s.inst_types, names) for s in held_out]
        out = groups_from_labels(real_types, dominant_types, prefix="type: ")
        real_tissue, other_tissue = [tissue(s.meta) for s in held_out], [tissue(m) for m in samples_meta]
        if all(real_tissue) and all(other_tissue):  # tissue groups only when both sides record it
            out |= groups_from_labels(real_tissue, other_tissue, prefix="tissue: ")
        return out

    counts = cache.type_instance_counts()[synth_index, 1:]
    synth_groups = condition_groups([s["meta"] for s in synth], [dominant(c) for c in counts])
    ref_groups = condition_groups(
        [s.meta for s in reference], [_dominant_type(s.inst_types, names) for s in reference]
    )
    encoder = extractor.display_name
    synthetic_report = fidelity_from_features(real_f, synth_f, encoder=encoder, groups=synth_groups)
    reference_report = fidelity_from_features(real_f, ref_f, encoder=encoder, groups=ref_groups)

    swd = metric_name("Sliced Wasserstein-1 (128 projections)", encoder)
    keys = [k for k in synthetic_report if k not in ("encoder", "num_real", "num_synthetic", "groups")]
    print(f"\n| metric (vs held-out {args.split}) | synthetic | real {args.reference_split} | ratio |")
    print("|---|---|---|---|")
    ratios = {}
    for key in keys:
        s_val, r_val = synthetic_report[key], reference_report[key]
        ratios[key] = s_val / r_val if r_val else float("nan")
        print(f"| {key} | {s_val:.4g} | {r_val:.4g} | {ratios[key]:.2f} |")
    for name, entry in synthetic_report["groups"].items():
        ref_entry = reference_report["groups"].get(name, {})
        s_val, r_val = entry.get(swd, float("nan")), ref_entry.get(swd, float("nan"))
        print(f"| {swd} [{name}] | {s_val:.4g} | {r_val:.4g} | {s_val / r_val:.2f} |")

    # Grid: pairs sharing a mask first, then unpaired synthetic tiles next to a random held-out tile.
    by_name = {s.name: s for s in held_out_full}
    # The mask source's real tile is shown whole: the mask source's edits (flips, elastic) and crop
    # are not recorded per sample, so the pair shares nuclei, not necessarily pixel positions.
    origins = [(s["meta"].get("source_meta") or {}).get("mask_origin") for s in synth]
    rows = [
        (by_name[o].image, f"real {o}: source of this mask\n(before the sampler's edits/crop)", s)
        for o, s in zip(origins, synth)
        if o in by_name
    ]
    rng = np.random.default_rng(0)
    for s in synth[: max(0, 6 - len(rows))]:
        real = held_out[int(rng.integers(len(held_out)))]
        rows.append((real.image, f"real {args.split} (random, unpaired)", s))
    smoke = args.cache.startswith("memory://fidelity-quick")
    title = f"{cache_note} vs {reader.name} {args.split}"
    save_grid(args.out / "grid.png", rows[:6], title=title, type_names=dict(reader.type_names))
    record = {
        "benchmark": "fidelity",
        "smoke_test": smoke,
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "device": device_description(args.device),
        "encoder": encoder,
        "cache": cache_note,
        "held_out": f"{reader.name} {args.split} at {args.data}, cut to {size[0]}x{size[1]}",
        "reference": f"{reader.name} {args.reference_split} (the real alternative, same cuts)",
        # Such a cache is fine for fidelity but must never train a segmenter scored on this split.
        "num_synthetic_from_held_out_masks": sum(o in by_name for o in origins),
        "synthetic_vs_held_out": synthetic_report,
        "real_reference_vs_held_out": reference_report,
        "ratio_synthetic_over_reference": ratios,
        "seconds": time.time() - started,
    }
    write_json(args.out / "fidelity.json", record)
    if smoke:
        print("\nSMOKE TEST: a toy cache; these numbers say nothing about MSDM.")
    print(f"wrote {args.out / 'fidelity.json'} and {args.out / 'grid.png'} in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
