"""The two proof benchmarks run end to end in their quick (smoke-test) mode and write JSON + PNG."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling `_common`
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow
def test_dice_benchmark_quick_on_toy_data_writes_every_arm_and_resumes(tmp_path):
    bench = _load("dice_with_synthesis")
    out, work = tmp_path / "dice", tmp_path / "work"
    argv = ["--quick", "--data", str(tmp_path / "absent"), "--out", str(out), "--work-dir", str(work)]
    assert bench.main([*argv, "--seeds", "2"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["smoke_test"] is True and "SMOKE TEST" in record["note"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == set(bench.ARMS)
    assert set(summary["real10+targeted"]) == set(bench.METRICS)
    assert summary["real100"]["PQ"]["n"] == 2 and 0.0 <= summary["real100"]["PQ"]["mean"] <= 1.0
    assert set(record["vs_real_only"]) == set(bench.TWIN) - set(bench.ABLATIONS)  # ablations: on request
    assert record["vs_real_only"]["real10+targeted"]["baseline"] == "real10"
    assert record["num_train"]["10"] < record["num_train"]["100"]
    shares = {(r["arm"], r["seed"]): r["synthetic_fraction"] for r in record["runs"]}
    assert shares[("real100", 0)] == 0.0 and shares[("real10+targeted", 0)] > 0.0
    # every arm trains on its own split: real100 and real10 see different tiles
    assert {r["num_train"] for r in record["runs"] if r["arm"] == "real10"} == {record["num_train"]["10"]}
    assert {r["num_train"] for r in record["runs"] if r["arm"] == "real100"} == {record["num_train"]["100"]}
    assert (out / "scores.png").stat().st_size > 10_000 and (out / "predictions.png").stat().st_size > 10_000
    # a third seed reuses the ten finished runs and adds five
    finished = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/seed*/result.json")}
    assert len(finished) == 10
    assert bench.main([*argv, "--seeds", "3"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert json.loads((out / "summary.json").read_text())["real100"]["PQ"]["n"] == 3
    # --whole-tiles scores finished runs once more, on whole tiles (toy layouts are whole already,
    # so their tile scores are their patch scores); it trains nothing and scores each run once
    assert bench.main([*argv, "--seeds", "1", "--whole-tiles"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    scored = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/seed*/whole_tiles.json")}
    assert {p.parent.name for p in scored} == {"seed0"} and len(scored) == len(bench.ARMS)
    record = json.loads((out / "results.json").read_text())
    tiles = json.loads((out / "summary_whole_tiles.json").read_text())
    assert tiles == record["summary_whole_tiles"] and set(tiles) == set(bench.ARMS)
    assert tiles["real10"]["PQ"]["n"] == 1 and record["summary"]["real10"]["PQ"]["n"] == 3
    run = next(r for r in record["runs"] if (r["arm"], r["seed"]) == ("real10+targeted", 0))
    assert run["metrics_whole_tiles"] == pytest.approx(run["metrics"], nan_ok=True)
    assert record["vs_real_only_whole_tiles"]["real10+targeted"]["seeds"] == [0]
    assert bench.main([*argv, "--seeds", "3", "--arms", "real10", "--whole-tiles", "--minutes", "0"]) == 0
    assert {p: p.stat().st_mtime_ns for p in work.glob("runs/*/seed*/whole_tiles.json")} == scored
    # a run whose model is gone (a work dir rebuilt from results) is reported, not scored
    shutil.rmtree(work / "runs" / "real10" / "seed1" / "train" / "model")
    assert bench.main([*argv, "--seeds", "2", "--arms", "real10", "--whole-tiles"]) == 0
    assert not (work / "runs" / "real10" / "seed1" / "whole_tiles.json").exists()
    # naming one arm runs nothing new and still reports every finished run
    assert bench.main([*argv, "--seeds", "3", "--arms", "real10"]) == 0
    assert set(json.loads((out / "summary.json").read_text())) == set(bench.ARMS)
    # the naive baseline (real tiles over-sampled towards the rare class) joins the report when run
    assert bench.main([*argv, "--seeds", "1", "--arms", "real10+oversampled"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["vs_real_only"]["real10+oversampled"]["baseline"] == "real10"
    # one seed has no spread to show: its std is null, not 0
    assert record["summary"]["real10+oversampled"]["PQ"]["n"] == 1
    assert record["summary"]["real10+oversampled"]["PQ"]["std"] is None
    # every run records its settings; the arms on every tile may train longer (--steps-full), and a
    # finished run of other settings stops the benchmark instead of being mixed in
    assert {r["steps"] for r in record["runs"]} == {bench.QUICK.steps}
    run = next(r for r in record["runs"] if r["arm"] == "real10+targeted")
    assert (run["prob"], run["synthetic_until"], run["targeting"]) == (0.5, 0.5, "select")
    assert "prob" not in next(r for r in record["runs"] if r["arm"] == "real10")
    with pytest.raises(SystemExit, match="prob 0.5, not 0.2: pass --prob-scarce 0.5"):
        bench.main([*argv, "--seeds", "1", "--arms", "real10+targeted", "--prob-scarce", "0.2"])
    with pytest.raises(SystemExit, match="synthetic_types True, not .'epithelial'.: pass neither"):
        bench.main([*argv, "--seeds", "1", "--arms", "real10+targeted", "--rare-types-only"])
    with pytest.raises(SystemExit, match="steps 3, not 5: pass --steps-full 3"):
        bench.main([*argv, "--seeds", "1", "--arms", "real100", "--steps-full", "5"])
    assert bench.main([*argv, "--seeds", "1", "--arms", "real100-random-init", "--steps-full", "5"]) == 0
    record = json.loads((out / "results.json").read_text())
    longer = next(r for r in record["runs"] if r["arm"] == "real100-random-init")
    assert longer["steps"] == 5 and record["config"]["steps_full"] == 5 and record["config"]["steps"] == 3
    history = work / "runs" / "real100-random-init" / "seed0" / "train" / "training_history.json"
    assert len(json.loads(history.read_text())["losses"]) == 5


@pytest.mark.slow
@pytest.mark.realdata
def test_fidelity_benchmark_quick(tmp_path, consep_root):
    bench = _load("fidelity")
    out = tmp_path / "fidelity"
    assert bench.main(["--quick", "--data", str(consep_root), "--max-samples", "8", "--out", str(out)]) == 0
    record = json.loads((out / "fidelity.json").read_text())
    assert record["smoke_test"] is True
    report = record["synthetic_vs_held_out"]
    assert report["encoder"] == "EfficientNet-Lite0" and "FID" not in report
    key = "FID (EfficientNet-Lite0 features)"
    assert record["ratio_synthetic_over_reference"][key] == pytest.approx(
        report[key] / record["real_reference_vs_held_out"][key]
    )
    assert (out / "grid.png").stat().st_size > 10_000


def test_fidelity_judge_is_trained_once_on_real_tiles_and_scores_tiles_against_their_masks(
    tmp_path, monkeypatch, one_torch_thread
):
    from tests.segment.conftest import NAMES, toy_sample

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the judge imports the sibling `_common`
    bench = _load("_model_fidelity")
    train, test = [toy_sample(s, size=128) for s in range(3)], [toy_sample(s, size=128) for s in (7, 8)]
    folder = tmp_path / "judge"
    judge = bench.judge_segmenter(train, NAMES, folder=folder, steps=2, device="cpu")
    assert judge.config.type_names == NAMES
    saved = sorted(p.stat().st_mtime_ns for p in (folder / "model").iterdir())
    again = bench.judge_segmenter(train, NAMES, folder=folder, steps=2, device="cpu")  # loaded, not retrained
    assert sorted(p.stat().st_mtime_ns for p in (folder / "model").iterdir()) == saved
    for a, b in zip(judge.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(SystemExit, match="--judge-steps 3"):
        bench.judge_segmenter(train, NAMES, folder=folder, steps=3, device="cpu")
    # Synthetic tiles identical to the real ones score exactly the judge's real row.
    rows = bench.mask_faithfulness(judge, [s.image for s in test], test)
    assert set(rows) == {"synthetic", "real"}
    np.testing.assert_equal(rows["synthetic"], rows["real"])  # NaN (nothing found) counts as equal
    assert {"Dice", "F1_detection", "PQ"} <= set(rows["real"])


@pytest.mark.slow
@pytest.mark.realdata
def test_prompts_vs_labels_quick_runs_the_whole_protocol_and_resumes(tmp_path, pcam_root):
    bench = _load("prompts_vs_labels")
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--quick", "--data", str(pcam_root), "--work-dir", str(work), "--out", str(out), "--steps", "2"]
    assert bench.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert isinstance(summary["num_groups"], int) and summary["num_groups"] == 6
    record = json.loads((out / "prompts_vs_labels.json").read_text())
    assert record["mode"].startswith("quick") and record["distinct prompts"]["label-only"] == 2
    assert {"coverage_pca.png", "grid_label-only.png", "grid_morphology.png"} <= set(record["figures"])
    chunks = sorted((work / "samples" / "morphology").glob("*.npy"))
    assert chunks and all(c.stat().st_size > 0 for c in chunks)
    # a second invocation reuses the prompter, the finished runs and the sampled chunks
    before = {c: c.stat().st_mtime_ns for c in chunks}
    assert bench.main(argv) == 0
    assert {c: c.stat().st_mtime_ns for c in chunks} == before


def test_paired_kid_bootstrap_matches_torchmetrics_kid_on_whole_sets_and_ranks_a_shift():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import numpy as np
        from _pcam_eval import paired_kid_bootstrap

        from synthaug.metrics.fidelity import kernel_distance
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 16))
    same = rng.normal(size=(60, 16))
    shifted = rng.normal(size=(60, 16)) + 0.5
    boot = paired_kid_bootstrap(real, {"same": same, "shifted": shifted}, num_resamples=50, seed=1)
    # one torchmetrics subset holding every row is the whole-set unbiased KID
    oracle, _ = kernel_distance(real, shifted, subsets=1, subset_size=60)
    assert boot["shifted"][0] == pytest.approx(oracle, rel=1e-4)
    assert boot["shifted"].shape == (51,) and boot["shifted"][1:].std() > 0
    assert (boot["shifted"][1:] > boot["same"][1:]).mean() > 0.95


def test_small_cnn_separates_an_easy_task_and_bootstrap_auc_brackets_it():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import numpy as np
        from _pcam_eval import bootstrap_auc, predict_proba, train_classifier
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    # tumour = a dark blob in the middle of a noisy tile; no colour shortcut
    images = rng.integers(100, 200, size=(80, 32, 32, 3)).astype(np.uint8)
    images[labels == 1, 10:22, 10:22] //= 3
    model = train_classifier(images, labels, steps=60, batch_size=16, seed=0)
    scores = predict_proba(model, images)
    auc = bootstrap_auc(labels, scores, num_resamples=200)
    assert auc["AUC"] > 0.95 and auc["CI low"] <= auc["AUC"] <= auc["CI high"] <= 1.0
    with pytest.raises(ValueError, match="both classes"):
        train_classifier(images[:40], labels[:40], steps=1)


def test_prompts_vs_labels_scoring_writes_the_summary_keys_and_figures(tmp_path):
    import argparse

    import numpy as np

    bench = _load("prompts_vs_labels")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _pcam_eval import score
    finally:
        sys.path.remove(str(BENCHMARKS))
    from synthaug.data import Sample

    rng = np.random.default_rng(0)

    def patches(n):
        out = []
        for i in range(n):
            label = bench.LABELS[i % 2]
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            empty = np.zeros((32, 32), np.int32)
            meta = {"label": f"{label} tissue", "morphology group": f"{i % 3}: toy"}
            out.append(Sample(image=image, inst=empty, types=empty.astype(np.uint8), meta=meta, name=f"p{i}"))
        return out

    train, test = patches(24), patches(16)
    budget = bench.Budget(32, 32, 12, 8, 1, 2, 1e-4, "tiny", None, 12, 1, 3, (2, 4), "bic", 2, 2)
    draw = bench.balanced_draw(train, 12, seed=0)
    assert sorted(np.bincount(np.arange(24)[draw] % 2)) == [6, 6]  # label-balanced, no repeats
    synthetic = {arm: rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8) for arm in bench.ARMS}
    prompts = {
        "label-only": [{"label": train[i].meta["label"]} for i in draw],
        "morphology": [train[i].meta for i in draw],
    }
    args = argparse.Namespace(out=tmp_path, seed=0)
    result, summary = score(
        args=args,
        budget=budget,
        train=train,
        test=test,
        draw=draw,
        synthetic=synthetic,
        prompts=prompts,
        prompter_info={"k": 3},
    )
    assert set(summary) == {
        "KID_label_only",
        "KID_morphology",
        "KID_spread",
        "KID_floor",
        "AUC_label_only",
        "AUC_morphology",
        "AUC_real",
        "num_groups",
    }
    assert summary["num_groups"] == 3 and summary["KID_spread"] > 0
    assert all(0.0 <= summary[k] <= 1.0 for k in ("AUC_label_only", "AUC_morphology", "AUC_real"))
    assert len(result["classifiers"]["morphology"]["runs"]) == 2
    assert result["distinct prompts"] == {"label-only": 2, "morphology": 6}
    for name in result["figures"]:
        assert (tmp_path / name).stat().st_size > 1000


def test_error_budget_swaps_in_true_maps_and_their_ceiling_is_near_perfect():
    # The error budget only means something if "true NP + true HV" is the post-processing's ceiling:
    # on separated toy nuclei it must recover them whatever the (untrained) network predicts.
    from synthaug.data.toy import make_toy_samples
    from synthaug.segment import NucleiSegmenter, SegmenterConfig

    budget = _load("segmenter_error_budget")
    torch.manual_seed(0)
    model = NucleiSegmenter(SegmenterConfig({}, pretrained=False)).eval()
    samples = make_toy_samples(2, 96, 96, seed=0, density=0.1)
    table, fates = budget.error_budget(model, samples, (0.4, 0.6), progress=False)
    assert set(table) == set(budget.SWAPS) and set(table["true NP + true HV"]) == {"0.4", "0.6"}
    ceiling = table["true NP + true HV"]["0.4"]
    assert ceiling["PQ"] > 0.9 and ceiling["PQ"] == pytest.approx(ceiling["DQ"] * ceiling["SQ"], abs=0.05)
    assert ceiling["SQ"] > 0.99  # the true foreground is kept pixel for pixel
    untrained = table["predicted NP + predicted HV"]["0.4"]["PQ"]
    assert untrained + 0.1 < table["true NP + predicted HV"]["0.4"]["PQ"]  # a true foreground helps
    # every true nucleus has one fate
    true_count = sum(len(np.unique(s.inst)) - 1 for s in samples)
    assert sum(sum(c.values()) for c in fates.values()) == true_count


def test_dice_table_shows_no_spread_for_one_seed(capsys):
    report = _load("_dice_report")
    summary = {
        "real10": {"PQ": {"mean": 0.38, "std": 0.005, "n": 3}},
        "real10+targeted": {"PQ": {"mean": 0.40, "std": None, "n": 1}},
    }
    report.print_table(summary, {"real10+targeted": {"PQ": {"diff_mean": 0.02}}})
    out = capsys.readouterr().out
    assert "| real10 | 3 | 0.380 ± 0.005 |" in out
    assert "| real10+targeted | 1 | 0.400 (+0.020) |" in out and "nan" not in out
