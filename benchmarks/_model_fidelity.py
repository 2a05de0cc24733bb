"""``fidelity.py --model``: sample a trained MSDM on every held-out mask and score it in one run.

For each CoNSeP *test* patch the model paints a 256-px tile on that patch's nuclei, with the colour
measured on the real tile (fg/bg mean RGB) and the real tile's prompt (its metadata, plus its
morphology group when the model was trained with image-derived prompts). Beside the synthetic
set, the same run scores the floor (real *train* tiles vs the test tiles) and the naive baseline
(``render_toy_tile`` on the same masks). Mask faithfulness is judged by ``synthaug.segment``'s
HoVer-Net-style segmenter trained on real training tiles only (the Dice benchmark's real-only
recipe): its Dice, detection F1 and PQ on the synthetic tiles, each against the mask it was painted
on, beside the same scores on the real test tiles.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import device_description, git_commit, write_json
from tqdm.auto import tqdm

# The Dice benchmark's real-only recipe (its ``real100`` arm): the judge is the segmenter that
# benchmark measures, so "as good as on real tiles" means the same thing in both reports.
JUDGE_BUDGET = {"batch_size": 8, "crop": 128}


def judge_segmenter(train, type_names: dict, *, folder: Path, steps: int, device: str):
    """The mask-faithfulness judge: ``synthaug.segment``'s segmenter trained on real ``train`` tiles only.

    Trained once into ``folder`` (resumable: a killed run continues from its checkpoint) and loaded
    from there on later runs; a finished folder trained with another step count is refused.
    """
    from _common import calibration_tiles

    from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, load_segmenter, train_segmenter

    if (folder / "model" / "config.json").is_file():
        record = json.loads((folder / "training_history.json").read_text())
        if record["config"]["steps"] != steps:
            raise SystemExit(
                f"judge folder {folder} holds a segmenter of {record['config']['steps']} steps, not "
                f"--judge-steps {steps}; pass --judge {folder} to use it or another --work-dir."
            )
        return load_segmenter(folder, device=device)
    config = SegmenterTrainingConfig(steps=steps, seed=0, model=SegmenterConfig(type_names), **JUDGE_BUDGET)
    model, _ = train_segmenter(train, config, output_dir=folder, device=device, desc="judge segmenter",
                               calibrate_on=calibration_tiles(train))
    return model


def mask_faithfulness(judge, synthetic: list[np.ndarray], test) -> dict[str, dict[str, float]]:
    """The judge's metric table on the synthetic tiles and on the real tiles, both against the masks.

    Each synthetic tile was painted on its test sample's mask, so that mask is its truth; the real
    row is the judge's own ceiling on held-out tissue.
    """
    from synthaug.segment import predict_many, score_predictions

    names = dict(judge.config.type_names)
    rows = {}
    for name, images in (("synthetic", synthetic), ("real", [s.image for s in test])):
        predictions = predict_many(judge, images, progress=True)
        rows[name] = score_predictions(test, predictions, names)
    return rows


def _prompts(model_dir: Path, samples) -> list:
    """Each tile's metadata, with its morphology group when the model has a prompter."""
    from synthaug.prompts import MorphologyPrompter

    if not (model_dir / "prompter" / "prompter_config.json").is_file():
        return [s.meta for s in samples]
    prompter = MorphologyPrompter.load(model_dir / "prompter")
    groups = prompter.transform([s.image for s in samples], [s.inst for s in samples])
    return [{**s.meta, **g.meta} for s, g in zip(samples, groups)]


def sample_tiles(pipe, samples, metas, *, steps: int, guidance: dict, batch: int, seed: int = 0):
    """One synthetic tile per sample, on its mask, colour and prompt; seeded per tile."""
    from synthaug.conditions import colour_stats

    colours = [colour_stats(s.image, s.inst).as_vector() for s in samples]
    out = []
    for start in tqdm(range(0, len(samples), batch), desc=f"sampling ({steps} steps)", unit="batch"):
        chunk = range(start, min(start + batch, len(samples)))
        images = pipe(
            [samples[i].inst for i in chunk], type_map=[samples[i].types for i in chunk],
            meta=[metas[i] for i in chunk], colour=np.stack([colours[i] for i in chunk]),
            guidance=guidance, num_inference_steps=steps,
            generator=[torch.Generator().manual_seed(seed + i) for i in chunk],
        ).images
        out.extend(images)
    return out, colours


def colour_error(images, samples, requested) -> float:
    """Mean |measured - requested| over the 6 colour values (fg only where the tile has nuclei)."""
    from synthaug.conditions import colour_stats

    errors = []
    for image, s, want in zip(images, samples, requested):
        got = colour_stats(image, s.inst).as_vector()
        keep = slice(0, 6) if s.inst.any() else slice(3, 6)
        errors.append(np.abs(got[keep] - want[keep]).mean())
    return float(np.mean(errors))


def run(args) -> int:
    from fidelity import _dominant_type, save_grid

    from synthaug.data import open_dataset, render_toy_tile
    from synthaug.metrics import load_feature_extractor
    from synthaug.metrics.features import extract_features
    from synthaug.metrics.fidelity import fidelity_from_features, groups_from_labels, metric_name
    from synthaug.model.loading import resolve_model_path
    from synthaug.model.train import resolve_mixed_precision
    from synthaug.sampling.pipeline import load_pipeline

    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    reader = open_dataset(args.data)
    names = dict(reader.type_names)
    test = reader.load(args.split)[: args.max_samples]
    train = reader.load(args.reference_split)
    model_dir = resolve_model_path(args.model)
    pipe = load_pipeline(args.model, scheduler=args.scheduler, device=args.device)
    if args.fp32:
        pipe.mixed_precision = "no"
    metas = _prompts(model_dir, test)
    guidance = {m: 1.0 for m in ("mask", "text", "colour")} if args.no_guidance else None
    extractor = load_feature_extractor(args.encoder, device=args.device)
    encoder = extractor.display_name
    real_f = extract_features([s.image for s in test], extractor)
    floor_f = extract_features([s.image for s in train], extractor)
    kid, fid = metric_name("KID mean", encoder), metric_name("FID", encoder)
    swd = metric_name("Sliced Wasserstein-1 (128 projections)", encoder)

    def dominant(s) -> str:
        return _dominant_type(s.inst_types, names)

    test_groups = [dominant(s) for s in test]

    # Quality against steps on a fixed subset, to choose the default (issue: KID at 8/15/25).
    curve = {}
    subset = list(range(0, len(test), max(1, len(test) // args.curve_tiles)))[: args.curve_tiles]
    for steps in args.curve_steps:
        tick = time.time()
        images, _ = sample_tiles(pipe, [test[i] for i in subset], [metas[i] for i in subset],
                                 steps=steps, guidance=guidance, batch=args.batch)
        feats = extract_features(images, extractor)
        report = fidelity_from_features(real_f, feats, encoder=encoder)
        curve[steps] = {"KID": report[kid], "KID_std": report[metric_name("KID std", encoder)],
                        "FID": report[fid], "num_tiles": len(subset),
                        "seconds_per_tile": (time.time() - tick) / len(subset)}
        print(f"steps {steps}: KID {report[kid]:.4f}, FID {report[fid]:.1f}, "
              f"{curve[steps]['seconds_per_tile']:.1f} s/tile ({len(subset)} tiles)")

    if args.steps == "auto":
        if not curve:
            raise SystemExit("--steps auto needs a quality-vs-steps curve (--curve-steps)")
        best = min(curve.values(), key=lambda c: c["KID"])
        args.steps = min(s for s, c in curve.items() if c["KID"] <= best["KID"] + best["KID_std"])
        print(f"steps: {args.steps} (fewest within one KID std of the best curve point)")
    args.steps = int(args.steps)
    tick = time.time()
    synth, requested = sample_tiles(pipe, test, metas, steps=args.steps, guidance=guidance, batch=args.batch)
    sampling_seconds = time.time() - tick
    toy = [render_toy_tile(s.inst, s.types, s.inst_types, seed=i) for i, s in enumerate(test)]
    synth_f, toy_f = extract_features(synth, extractor), extract_features(toy, extractor)
    same = groups_from_labels(test_groups, test_groups, prefix="type: ")
    reports = {
        "synthetic": fidelity_from_features(real_f, synth_f, encoder=encoder, groups=same),
        "floor (real train vs test)": fidelity_from_features(
            real_f, floor_f, encoder=encoder,
            groups=groups_from_labels(test_groups, [dominant(s) for s in train], prefix="type: ")),
        "toy renderer": fidelity_from_features(real_f, toy_f, encoder=encoder, groups=same),
    }
    if args.judge is not None:
        from synthaug.segment import load_segmenter

        judge = load_segmenter(args.judge, device=args.device)
    else:
        judge = judge_segmenter(train, names, folder=args.work_dir / "judge", steps=args.judge_steps,
                                device=args.device)
    faithfulness = mask_faithfulness(judge, synth, test)
    summary = {
        "KID_synthetic": reports["synthetic"][kid],
        "KID_floor": reports["floor (real train vs test)"][kid],
        "KID_toy": reports["toy renderer"][kid],
        "FID_synthetic": reports["synthetic"][fid],
        "FID_floor": reports["floor (real train vs test)"][fid],
        "mask_dice_synthetic": faithfulness["synthetic"]["Dice"],
        "mask_dice_real": faithfulness["real"]["Dice"],
        "colour_error": colour_error(synth, test, requested),
        "num_tiles": float(len(test)),
    }

    print(f"\n| metric (vs {len(test)} held-out {args.split} tiles) | synthetic | floor | toy |")
    print("|---|---|---|---|")
    for key in (kid, metric_name("KID std", encoder), fid, swd):
        print(f"| {key} | " + " | ".join(f"{r[key]:.4g}" for r in reports.values()) + " |")
    for group in sorted(reports["synthetic"]["groups"]):
        vals = [r["groups"].get(group, {}).get(swd, float("nan")) for r in reports.values()]
        print(f"| {swd} [{group}] | " + " | ".join(f"{v:.4g}" for v in vals) + " |")
    for key in ("Dice", "F1_detection", "PQ"):
        print(f"| mask {key} (judge: segmenter trained on real {args.reference_split} tiles) | "
              f"{faithfulness['synthetic'][key]:.3f} | real test: {faithfulness['real'][key]:.3f} | |")
    print(f"| colour error (mean abs, RGB in [0, 1]) | {summary['colour_error']:.4f} | | |")

    rows = [(test[i].image, f"real {test[i].name}",
             {"image": synth[i], "inst": test[i].inst, "type": test[i].types})
            for i in np.linspace(0, len(test) - 1, 8).astype(int)]
    grid = save_grid(args.out / "grid.png", rows, title=f"{args.model}: {args.steps} {args.scheduler} steps, "
                     f"{'no guidance' if args.no_guidance else 'default guidance'}, CoNSeP test masks",
                     type_names=names)
    write_json(args.out / "summary.json", summary)
    write_json(args.out / "fidelity.json", {
        "benchmark": "fidelity --model", "model": str(args.model), "model_config": json.loads(
            (model_dir / "model" / "config.json").read_text()) if (model_dir / "model").is_dir() else None,
        "scheduler": args.scheduler, "steps": args.steps, "guidance": guidance or "default",
        "device": device_description(args.device), "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d"), "wall_seconds": time.time() - started,
        "sampling_seconds_per_tile": sampling_seconds / len(test), "threads": torch.get_num_threads(),
        "mixed_precision": resolve_mixed_precision(pipe.mixed_precision, pipe.device),
        "judge": {"kind": f"synthaug.segment segmenter trained on the {args.reference_split} split only",
                  "folder": str(args.judge or args.work_dir / "judge"),
                  "marker_threshold": judge.config.marker_threshold,
                  "mask_faithfulness": faithfulness},
        "summary": summary, "reports": reports, "quality_vs_steps": curve, "grid": str(grid),
    })
    print(f"\nwrote {args.out / 'summary.json'}, fidelity.json and {grid.name}")
    return 0
