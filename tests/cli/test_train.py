"""`synthaug train` parses arguments into TrainConfig and runs the library loop on a folder dataset."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from synthaug.cli.main import main
from synthaug.conditions import ConditionChannels
from synthaug.model import load_msdm
from tests.model.conftest import toy_sample


def _write_folder_dataset(root, n: int = 3) -> None:
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            s = toy_sample(i, n_types=3)
            Image.fromarray(s.image).save(root / split / "images" / f"tile_{i}.png")
            np.save(
                root / split / "labels" / f"tile_{i}.npy", np.stack([s.inst, s.types.astype(np.int32)], -1)
            )
    (root / "classes.json").write_text(json.dumps({"1": "other", "2": "inflammatory", "3": "epithelial"}))


def test_cli_trains_and_resumes(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    _write_folder_dataset(data)
    args = (
        f"train --data {data} --out {out} --size tiny --resolution 32 --batch-size 2 "
        "--checkpoint-every 1 --sample-every 0"
    ).split()
    assert main([*args, "--steps", "2"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2 and summary["data"]["n_samples"] == 3
    assert summary["config"]["model_size"] == "tiny" and summary["config"]["resolution"] == 32
    # The condition stack follows the dataset's type names (3 types here, not the default 4).
    load_msdm(out, expected_channels=ConditionChannels(num_types=3))
    assert main([*args, "--steps", "3", "--resume"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["steps_this_session"] == 1
