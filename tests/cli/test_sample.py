"""``synthaug sample``: argument parsing, an end-to-end run from a saved model, --consolidate."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch

from synthaug.cli.main import main
from synthaug.cli.sample import parse_guidance
from synthaug.model import MSDM, make_noise_scheduler
from synthaug.sampling.cache import SyntheticCache

SIZE = 16


@pytest.fixture
def tiny_model(one_torch_thread) -> MSDM:
    """A tiny untrained MSDM (the sampling tests' one): the command's plumbing, not image quality."""
    torch.manual_seed(0)
    return MSDM.from_preset("tiny", sample_size=SIZE).eval()


def test_parse_guidance():
    assert parse_guidance("text=2,colour=1.5,mask=1") == {"text": 2.0, "colour": 1.5, "mask": 1.0}
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        parse_guidance("text:2")
    for bad in ("text=high", "text=nan", "colour=inf", "mask=-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="finite numbers >= 0"):
            parse_guidance(bad)


@pytest.mark.slow
def test_sample_command_fills_a_targeted_store(tiny_model, tmp_path, capsys):
    run = tmp_path / "run"
    tiny_model.save_pretrained(run / "model")
    make_noise_scheduler().save_pretrained(run / "scheduler")
    out = str(tmp_path / "synthetic.zarr")
    argv = [
        "sample", "--model", str(run), "--layouts", "--size", str(SIZE), "--meta", "tissue=colon",
        "--target-type", "epithelial", "--target-share", "0.6", "--num-samples", "3", "--batch-size", "2",
        "--steps", "1", "--guidance", "text=1.5", "--colour", "0.35,0.2,0.5,0.9,0.75,0.85",
        "--scheduler", "unipc", "--out", out, "--device", "cpu",
    ]
    assert main(argv) == 0
    assert "3 samples committed" in capsys.readouterr().out
    cache = SyntheticCache.open(out)
    meta = cache.read(2)["meta"]
    assert meta["target"] == {"type": "epithelial", "share": 0.6, "by": "instances", "edit": True}
    assert meta["scheduler"] == "UniPCMultistepScheduler" and meta["text"] == "tissue: colon."
    assert meta["source_meta"]["target_type"] == "epithelial"
    assert cache.type_instance_counts().shape == (3, tiny_model.condition_channels.num_types + 1)
    # a second run without --resume must not touch the store: a one-line error, exit status 2
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "synthaug sample: error:" in err and "pass resume=True" in err and "Traceback" not in err
    assert main([*argv, "--resume"]) == 0 and len(SyntheticCache.open(out)) == 3
    # a resume with another seed would mix two runs in one store: refused, naming the setting
    assert main([*argv, "--resume", "--seed", "5", "--num-samples", "4"]) == 2
    assert "seed (store: 0, now: 5)" in capsys.readouterr().err
    # ... and so would masks chosen unedited after masks built by edits
    assert main([*argv, "--resume", "--targeting", "select", "--num-samples", "4"]) == 2
    assert "target" in capsys.readouterr().err
    assert len(SyntheticCache.open(out)) == 3


def test_consolidate_merges_rank_records(tmp_path, capsys):
    url = str(tmp_path / "c.zarr")
    cache = SyntheticCache.create(url, height=4, width=4, num_types=1)
    cache.reserve(2)
    cache.claim([(0, 2)])
    for rank in range(2):
        cache.write(rank, image=np.zeros((1, 4, 4, 3), np.uint8), inst=np.zeros((1, 4, 4), np.int32),
                    type=np.zeros((1, 4, 4), np.uint8), meta=[{"rank": rank}])
        cache.commit(rank, rank + 1, writer=f"rank-{rank}")
    assert len(SyntheticCache.open(url)) == 0
    assert main(["sample", "--consolidate", "--out", url]) == 0
    assert "2 samples committed" in capsys.readouterr().out
    assert SyntheticCache.open(url).read(1)["meta"] == {"rank": 1}


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--steps", "0"], "--steps: must be a positive integer"),
        (["--steps", "-3"], "--steps: must be a positive integer"),
        (["--size", "0"], "--size: must be a positive integer"),
        (["--guidance", "text=nan,colour=inf"], "finite numbers >= 0"),
        (["--target-share", "1.5"], r"--target-share: must lie in \(0, 1\]"),
        (["--colour", "0,0,0,0,0,2"], "--colour needs 6 numbers"),
    ],
)
def test_sample_refuses_bad_values_before_creating_anything(tmp_path, capsys, flags, match):
    out = tmp_path / "never.zarr"
    argv = ["sample", "--model", "consep", "--layouts", "--num-samples", "2", "--out", str(out), *flags]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()


def test_sample_refuses_a_missing_gpu_and_an_out_that_is_a_file(tmp_path, capsys):
    import torch

    out = tmp_path / "never.zarr"
    argv = ["sample", "--model", "consep", "--layouts", "--num-samples", "2", "--out", str(out)]
    if torch.cuda.device_count() < 8:
        assert main([*argv, "--device", "cuda:7"]) == 2
        assert "--device 'cuda:7'" in capsys.readouterr().err and not out.exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main([*argv[:-1], str(a_file)]) == 2
    assert "is an existing file" in capsys.readouterr().err and a_file.read_text() == "mine"
    with pytest.raises(ValueError, match="existing file"):
        main(["--debug", *argv[:-1], str(a_file)])  # --debug: the exception itself, traceback and all
