"""``synthaug segment train | evaluate | predict`` on a toy dataset folder, and their refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthaug.cli.main import main
from synthaug.segment import TYPE_FREE_METRICS
from tests.data import toys

FAST = ["--steps", "2", "--batch-size", "2", "--crop", "32", "--encoder", "resnet18", "--no-pretrained"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs on one torch thread (the shared ``one_torch_thread`` fixture)."""


def test_train_evaluate_predict_from_the_command_line(tmp_path, capsys):
    toys.write_folder(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["segment", "train", "--data", str(tmp_path / "data"), "--out", str(run), *FAST]) == 0
    assert (run / "model" / "model.safetensors").is_file() and (run / "loss.png").is_file()
    assert main(["segment", "evaluate", "--model", str(run), "--data", str(tmp_path / "data")]) == 0
    record = json.loads((run / "evaluation_test.json").read_text())
    assert record["split"] == "test" and record["num_samples"] == 1 and record["test_time_flips"]
    assert {"Dice", "AJI", "PQ", "mPQ", "F1_detection", "F1_tumour", "F1_lymphocyte"} <= set(
        record["metrics"]
    )
    assert "| run on test (1) |" in capsys.readouterr().out
    one_pass = tmp_path / "one_pass.json"
    argv = ["segment", "evaluate", "--model", str(run), "--data", str(tmp_path / "data"), "--no-tta"]
    assert main([*argv, "--out", str(one_pass)]) == 0
    assert json.loads(one_pass.read_text())["test_time_flips"] is False
    image = tmp_path / "tile.png"
    toys.write_png(image, np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    assert (
        main(["segment", "predict", "--model", str(run), "--image", str(image), "--out", str(tmp_path / "p")])
        == 0
    )
    nuclei = json.loads((tmp_path / "p" / "nuclei.json").read_text())
    assert isinstance(nuclei["nuclei"], list)
    assert {"inst.png", "types.png", "overlay.png"} <= {p.name for p in (tmp_path / "p").iterdir()}


def test_a_dataset_without_types_gets_type_free_metrics(tmp_path):
    toys.write_folder(tmp_path / "data", with_types=False)
    (tmp_path / "data" / "classes.json").unlink()
    run = tmp_path / "run"
    argv = ["segment", "train", "--data", str(tmp_path / "data"), "--out", str(run), "--real-types-only"]
    assert main([*argv, *FAST]) == 0
    assert json.loads((run / "training_history.json").read_text())["config"]["synthetic_types"] is False
    assert main(["segment", "evaluate", "--model", str(run), "--data", str(tmp_path / "data")]) == 0
    metrics = json.loads((run / "evaluation_test.json").read_text())["metrics"]
    assert set(metrics) == set(TYPE_FREE_METRICS)


def test_synthetic_pairs_from_a_store_stop_after_synthetic_until(tmp_path, capsys):
    from synthaug.sampling.cache import SyntheticCache

    toys.write_folder(tmp_path / "data")
    store = SyntheticCache.create(str(tmp_path / "pairs.zarr"), height=48, width=48, num_types=2)
    tiles = [toys.toy_tile(700 + i, num_types=2) for i in range(3)]
    store.append(
        image=np.stack([t[0] for t in tiles]),
        inst=np.stack([t[1] for t in tiles]),
        type=np.stack([toys.type_map(t[1], t[2]) for t in tiles]),
        meta=[{"index": i} for i in range(3)],
    )
    run = tmp_path / "run"
    argv = ["segment", "train", "--data", str(tmp_path / "data"), "--out", str(run), *FAST]
    argv += ["--steps", "4", "--cache", store.url, "--prob", "1", "--synthetic-until", "0.5"]
    assert main([*argv, "--synthetic-types", "lymphocyte"]) == 0
    record = json.loads((run / "training_history.json").read_text())
    assert record["config"]["synthetic_until"] == 0.5 and record["synthetic_fraction"] == 0.5
    assert record["config"]["synthetic_types"] == [2]  # the synthetic pairs typed their lymphocytes only
    capsys.readouterr()
    assert main([*argv[:5], str(tmp_path / "run2"), *argv[6:], "--synthetic-types", "mitotic"]) == 2
    assert "`synthetic_types` 'mitotic' is not a type here" in capsys.readouterr().err


def test_whole_tiles_are_scored_stitched_from_their_patches(tmp_path, capsys):
    toys.write_consep_patches(tmp_path / "consep", {"train": 1, "test": 2}, patch=32)
    run = tmp_path / "run"
    assert main(["segment", "train", "--data", str(tmp_path / "consep"), "--out", str(run), *FAST]) == 0
    argv = ["segment", "evaluate", "--model", str(run), "--data", str(tmp_path / "consep")]
    assert main([*argv, "--whole-tiles"]) == 0
    record = json.loads((run / "evaluation_test_tiles.json").read_text())
    assert record["whole_tiles"] and record["num_samples"] == 2  # 2 tiles, not their 8 patches
    assert main(argv) == 0
    assert json.loads((run / "evaluation_test.json").read_text())["num_samples"] == 8
    toys.write_folder(tmp_path / "folder")
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "folder"), "--whole-tiles"]) == 2
    assert "knows no tiles to stitch" in capsys.readouterr().err


def test_nothing_is_overwritten_and_errors_name_the_fix(tmp_path, capsys):
    toys.write_folder(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["segment", "train", "--data", str(tmp_path / "data"), "--out", str(run), *FAST]) == 0
    capsys.readouterr()
    assert main(["segment", "train", "--data", str(tmp_path / "data"), "--out", str(run), *FAST]) == 2
    assert "already holds a trained segmenter" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep")
    image = tmp_path / "tile.png"
    toys.write_png(image, np.zeros((40, 40, 3), np.uint8))
    assert (
        main(["segment", "predict", "--model", str(run), "--image", str(image), "--out", str(tmp_path / "p")])
        == 2
    )
    assert "is not empty" in capsys.readouterr().err and (tmp_path / "p" / "mine.txt").read_text() == "keep"
    args = [
        "segment",
        "train",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "r2"),
        "--target-type",
        "1",
    ]
    assert main(args) == 2 and "--cache STORE" in capsys.readouterr().err
    args[-2:] = ["--synthetic-until", "0.5"]
    assert main(args) == 2 and "--synthetic-until schedules synthetic draws" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "segment",
                "train",
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "r3"),
                "--steps",
                "0",
            ]
        )
