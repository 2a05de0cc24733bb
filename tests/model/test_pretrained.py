"""The shipped CoNSeP model: loads by name offline, small fp16 weights, a complete model card."""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors import safe_open

from synthaug.model.loading import PRETRAINED, resolve_model_path
from synthaug.sampling.pipeline import load_pipeline


def test_every_shipped_model_is_small_fp16_and_has_a_model_card():
    for name in PRETRAINED:
        folder = resolve_model_path(name)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert size <= 20 * 1024 * 1024, (name, size)
        with safe_open(folder / "model" / "diffusion_pytorch_model.safetensors", "pt") as weights:
            dtypes = {weights.get_slice(k).get_dtype() for k in weights.keys()}
        assert dtypes == {"F16"}, dtypes
        card = (folder / "MODEL_CARD.md").read_text()
        for needed in ("CoNSeP", "train split", "HoVer-Net", "Licence", "synthaug train", "KID"):
            assert needed in card, needed
        summary = json.loads((folder / "training_summary.json").read_text())
        assert "train" in summary["trained_on"]


def test_consep_loads_by_name_and_paints_a_tile_on_the_mask_size():
    pipe = load_pipeline("consep", device="cpu")
    assert next(pipe.model.parameters()).dtype == torch.float32  # fp16 on disk, fp32 to run on a CPU
    assert pipe.model.config.prediction_type == pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.model.condition_channels.num_types == 4  # CoNSeP's other/inflammatory/epithelial/spindle
    inst = np.zeros((32, 32), np.int32)
    inst[8:16, 8:16] = 1
    out = pipe(inst, inst_types={1: 3}, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3) and out.images.dtype == np.uint8


def test_a_local_folder_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("consep") != tmp_path / "consep"
    (tmp_path / "consep").mkdir()
    assert resolve_model_path("consep").resolve() == (tmp_path / "consep").resolve()
