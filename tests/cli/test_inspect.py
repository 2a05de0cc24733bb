"""``synthaug data inspect``: printed counts and the PNGs it writes."""

from __future__ import annotations

import pytest
from PIL import Image

from synthaug.cli.main import main
from tests.data import toys


def test_inspect_prints_counts_and_writes_pngs(tmp_path, capsys):
    written = toys.write_consep_original(tmp_path / "ds", {"train": 2, "test": 1})
    assert main(["data", "inspect", str(tmp_path / "ds"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    n_train = sum(len(written[f"train_{i}"][2]) for i in (1, 2))
    assert "consep reader" in out
    assert f"| train | 2 | 2 | {n_train} |" in out
    for png in ("size_histogram.png", "montage.png"):
        with Image.open(tmp_path / "out" / png) as img:
            assert img.size[0] > 200 and img.size[1] > 200


def test_inspect_without_out_only_prints(tmp_path, capsys):
    toys.write_pcam(tmp_path / "pcam")
    assert main(["data", "inspect", str(tmp_path / "pcam")]) == 0
    out = capsys.readouterr().out
    assert "| train | 4 | 4 | 2 | 2 |" in out and "label normal" in out
    assert "--out DIR" in out
    assert not (tmp_path / "pcam" / "montage.png").exists()


def test_inspect_reports_bad_input_without_a_traceback(tmp_path, capsys):
    toys.write_pcam(tmp_path / "pcam")
    assert main(["data", "inspect", str(tmp_path / "pcam"), "--split", "val"]) == 2
    assert "unknown split 'val'" in capsys.readouterr().err


@pytest.mark.realdata
def test_inspect_real_consep_test_split(consep_root, tmp_path, capsys):
    argv = ["data", "inspect", str(consep_root), "--split", "test", "--montage", "4", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| test | 224 | 14 | 10,330 | 658 | 1,879 | 3,844 | 3,949 |" in out
    assert (tmp_path / "montage.png").stat().st_size > 10_000
