"""Where a segmenter loses its PQ: the nucleus map (NP), the distance maps (HV) or the watershed.

HoVer-Net's instances come from two predicted maps: NP says which pixels are nuclei, the Sobel
gradients of HV say where touching nuclei part; MONAI's watershed turns them into instances.
Swapping each predicted map for the one computed from the truth, one at a time, splits the gap
between a segmenter and a perfect one:

  predicted NP + predicted HV   the segmenter as it is
  true NP      + predicted HV   what a perfect foreground would give: the HV head's share of the gap
  predicted NP + true HV        what perfect separation would give: the NP head's share
  true NP      + true HV        the ceiling of the post-processing itself

Each is scored by PQ and its two factors, DQ (detection: an F1 at IoU > 0.5) and SQ (mean IoU of the
matches), per test patch and averaged (as ``synthaug.segment.evaluate`` does), at every candidate
marker threshold, so a swap is not judged at a threshold tuned for the other maps.

Per true nucleus type, it also counts what became of the true nuclei under the segmenter as it is
(its own marker threshold, HoVer-Net's 12-px centroid pairing): found with the right type, found
with another, or not found, which tells a classification failure from a detection failure.

    python benchmarks/segmenter_error_budget.py --model runs/dice/runs/real100/seed0/train \\
        --out benchmarks/results/segmenter_error_budget.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, device_description, git_commit, write_json  # noqa: E402

SWAPS = {
    "predicted NP + predicted HV": (False, False),
    "true NP + predicted HV": (True, False),
    "predicted NP + true HV": (False, True),
    "true NP + true HV": (True, True),
}
FATES = ("right type", "other type", "missed")


def true_maps(inst: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """NP logits (a confident two-class map) and HV maps computed from a true instance mask."""
    from synthaug.conditions import compute_hv_maps

    nucleus = torch.as_tensor(inst > 0)
    np_logits = torch.stack([~nucleus, nucleus]).float() * 20 - 10  # softmax: 0/1 up to 2e-9
    return np_logits, torch.as_tensor(compute_hv_maps(inst))


def error_budget(
    model, samples, thresholds, *, progress: bool = True
) -> tuple[dict[str, dict[str, dict]], dict[int, dict[str, int]]]:
    """``({swap: {threshold: {"PQ", "DQ", "SQ"}}}, {true type: {"right type", "other type", "missed"}})``.

    The scores are means over ``samples``; the fates count true nuclei pooled over ``samples``.
    """
    from synthaug.conditions import instance_type_votes
    from synthaug.metrics.detection import pair_centroids
    from synthaug.metrics.segmentation import panoptic_quality
    from synthaug.segment.model import HV, NP
    from synthaug.segment.predict import centroids_of, network_outputs, postprocess

    scores = {swap: {t: [] for t in thresholds} for swap in SWAPS}
    fates: dict[int, dict[str, int]] = {}
    own = model.config.marker_threshold
    for sample in tqdm(samples, desc="error budget", disable=not progress):
        predicted = network_outputs(model, sample.image)
        truth_np, truth_hv = true_maps(sample.inst)
        found = None  # the segmenter as it is, at its own threshold (reused from the sweep when there)
        for swap, (use_true_np, use_true_hv) in SWAPS.items():
            maps = dict(predicted)  # TP travels along, so the unswapped prediction carries its types
            maps[NP] = truth_np if use_true_np else predicted[NP]
            maps[HV] = truth_hv if use_true_hv else predicted[HV]
            for t in thresholds:
                result = postprocess(maps, marker_threshold=t)
                scores[swap][t].append(panoptic_quality(sample.inst, result.inst))
                if not (use_true_np or use_true_hv) and t == own:
                    found = result
        found = found or postprocess(predicted, marker_threshold=own)
        _, true_types = instance_type_votes(sample.inst, sample.types)
        pred_types = np.array([found.inst_types[i] for i in range(1, len(found.centroids) + 1)], np.int64)
        pairs, missed, _ = pair_centroids(centroids_of(sample.inst), found.centroids, radius=12.0)
        outcomes = [(t, "right type" if pred_types[p] == true_types[t] else "other type") for t, p in pairs]
        for t, fate in outcomes + [(t, "missed") for t in missed]:
            fates.setdefault(int(true_types[t]), dict.fromkeys(FATES, 0))[fate] += 1
    table = {
        swap: {
            str(t): {k: float(np.mean([getattr(r, k.lower()) for r in rows])) for k in ("PQ", "DQ", "SQ")}
            for t, rows in by_threshold.items()
        }
        for swap, by_threshold in scores.items()
    }
    return table, dict(sorted(fates.items()))


def main(argv: list[str] | None = None) -> int:
    from synthaug.data import open_dataset
    from synthaug.segment import load_segmenter
    from synthaug.segment.evaluate import MARKER_THRESHOLDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a segmenter folder (segment train --out)")
    parser.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "consep").resolve())
    parser.add_argument("--split", default="test")
    parser.add_argument("--every", type=int, default=1, help="score every n-th patch")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "segmenter_error_budget.json"
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"no dataset at {args.data}; pass --data.")
    model = load_segmenter(args.model)
    samples = open_dataset(args.data).load(args.split)[:: args.every]
    started = time.time()
    table, fates = error_budget(model, samples, MARKER_THRESHOLDS)
    print(f"{'maps':<30} " + " ".join(f"PQ@{t:<5}" for t in MARKER_THRESHOLDS) + "  best (PQ / DQ / SQ)")
    for swap, rows in table.items():
        best = max(rows.values(), key=lambda r: r["PQ"])
        print(f"{swap:<30} " + " ".join(f"{r['PQ']:<8.3f}" for r in rows.values())
              + f"  {best['PQ']:.3f} / {best['DQ']:.3f} / {best['SQ']:.3f}")  # fmt: skip
    names = model.config.type_names
    print(f"\ntrue nuclei by type ({12.0:.0f}-px centroid pairing):  " + "  ".join(FATES))
    for type_id, counts in fates.items():
        total = sum(counts.values())
        shares = "  ".join(f"{counts[f] / total:10.1%}" for f in FATES)
        print(f"{names.get(type_id, type_id)!s:>14} ({total:5d}) {shares}")
    write_json(args.out, {
        "benchmark": "segmenter_error_budget",
        "command": " ".join(sys.argv),
        "commit": git_commit(),
        "device": device_description("cpu"),
        "date": time.strftime("%Y-%m-%d"),
        "model": str(args.model),
        "data": f"{args.data} split {args.split!r}, every {args.every}th patch ({len(samples)})",
        "seconds": time.time() - started,
        "scores": table,
        "true_nuclei_by_type": {names.get(k, str(k)): v for k, v in fates.items()},
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
