"""The demo runs end to end in its reduced mode and leaves a complete, self-consistent report."""

from __future__ import annotations

import json
import re

import pytest

from synthaug.demo.run import DemoConfig, run_demo
from synthaug.sampling import SyntheticCache


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(DemoConfig.preset("quick", out_dir=out, device="cpu")), out


def test_report_references_only_figures_that_exist(demo):
    result, out = demo
    html = result.report_path.read_text()
    pngs = re.findall(r"src='([^']+\.png)'", html)
    assert {
        "conditions.png",
        "synthetic_pairs.png",
        "scores.png",
        "segmentation_loss.png",
    } <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "toy data" in html  # says plainly which parts ran on toy data


def test_report_json_scores_both_runs_with_every_metric_and_type(demo):
    result, out = demo
    report = json.loads((out / "report.json").read_text())
    assert set(report["scores"]) == {"real only", "real + SyntheticAugment"} == set(result.scores)
    types = ("other", "inflammatory", "epithelial", "spindle")
    for scores in report["scores"].values():
        assert set(scores) == {"Dice", "AJI", "PQ", "mPQ", "F1_detection", "accuracy_type"} | {
            f"F1_{t}" for t in types
        }
        assert all(0.0 <= v <= 1.0 for v in scores.values() if v == v)  # nan = undefined (no nuclei)
    # the synthetic run really drew from the cache, the real-only run never did
    seen = report["synthetic_fraction_seen"]
    assert seen["real only"] == 0.0 and seen["real + SyntheticAugment"] > 0.0


def test_cache_holds_the_requested_pairs_targeted_at_epithelial(demo):
    _, out = demo
    cache = SyntheticCache.open(str(out / "synthetic.zarr"))
    config = DemoConfig.preset("quick")
    assert len(cache) == config.num_synthetic
    pair = cache.read(0)
    assert pair["image"].shape == (config.tile_size, config.tile_size, 3)
    counts = cache.type_instance_counts().sum(axis=0)
    assert counts[3] / counts[1:].sum() >= config.target_share - 0.15


def test_bad_settings_are_refused_with_the_argument_named(tmp_path):
    with pytest.raises(ValueError, match="`data`"):
        DemoConfig(data=tmp_path / "missing")
    with pytest.raises(ValueError, match="`name`"):
        DemoConfig.preset("huge")
    with pytest.raises(ValueError, match="`tile_size`"):
        DemoConfig(tile_size=40)


def test_a_second_demo_writes_a_fresh_folder_and_keeps_the_first(tmp_path):
    from synthaug.demo.run import fresh_output_folder

    out = tmp_path / "demo-out"
    assert fresh_output_folder(out) == out and out.is_dir()  # missing: used as is
    (out / "synthetic.zarr").mkdir()
    (out / "synthetic.zarr" / "zarr.json").write_text("{}")  # the README's own cache name
    (out / "report.html").write_text("first run")
    second = fresh_output_folder(out)
    assert second == out / "run-002" and second.is_dir() and not any(second.iterdir())
    assert fresh_output_folder(out) == out / "run-003"
    assert (out / "report.html").read_text() == "first run"
    assert (out / "synthetic.zarr" / "zarr.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        fresh_output_folder(tmp_path / "file")
