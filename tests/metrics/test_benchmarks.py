"""The two proof benchmarks run end to end in their quick (smoke-test) mode and write JSON + PNG."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling `_common`
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow
def test_dice_benchmark_quick_on_toy_data(tmp_path):
    bench = _load("dice_with_synthesis")
    out = tmp_path / "dice"
    argv = ["--quick", "--data", str(tmp_path / "absent"), "--out", str(out), "--seeds", "2", "--steps", "2"]
    argv += ["--num-synthetic", "8"]
    assert bench.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["smoke_test"] is True and "SMOKE TEST" in record["note"]
    arms = {"real", "real + synth", "real + synth (targeted)", "real 25%", "real 25% + synth"}
    assert set(record["summary_mean_std"]) == arms
    assert set(record["vs_real_only"]) == arms - {"real", "real 25%"}
    assert record["vs_real_only"]["real 25% + synth"]["baseline"] == "real 25%"
    assert record["num_train"]["real 25%"] < record["num_train"]["real"]
    assert record["synthetic_share_of_draws"]["real"] == 0.0
    assert record["synthetic_share_of_draws"]["real + synth"] > 0.0
    mean, _ = record["summary_mean_std"]["real"]["Dice nuclei (foreground)"]
    assert 0.0 <= mean <= 1.0
    assert len(record["per_seed"]["real"]) == 2
    assert (out / "dice.png").stat().st_size > 10_000


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
