"""The segmenter's heads, its ImageNet encoder, and a save -> load round trip."""

from __future__ import annotations

import json

import pytest
import torch

from synthaug.segment import NucleiSegmenter, SegmenterConfig, load_segmenter
from synthaug.segment.model import HV, NP, TP

from .conftest import NAMES


def test_heads_have_hovernet_shapes_and_a_type_free_model_has_no_tp(tiny_model):
    out = tiny_model(torch.rand(2, 3, 64, 96))
    assert out[NP].shape == (2, 2, 64, 96) and out[HV].shape == (2, 2, 64, 96)
    assert out[TP].shape == (2, len(NAMES) + 1, 64, 96)
    untyped = NucleiSegmenter(SegmenterConfig({}, encoder="resnet18", pretrained=False))
    assert set(untyped(torch.rand(1, 3, 64, 64))) == {NP, HV}


def test_pretrained_encoder_carries_the_shipped_imagenet_weights():
    from synthaug.metrics.features import build_efficientnet_lite0

    imagenet = build_efficientnet_lite0(num_classes=1000).state_dict()
    model = NucleiSegmenter(SegmenterConfig(NAMES))
    encoder = model.encoder.model.state_dict()
    assert len(encoder) > 200
    for key in ("conv_stem.weight", "blocks.3.1.conv_pw.weight", "blocks.6.0.bn3.running_var"):
        torch.testing.assert_close(encoder[key], imagenet[key])
    random = NucleiSegmenter(SegmenterConfig(NAMES, pretrained=False)).encoder.model.state_dict()
    assert not torch.equal(random["conv_stem.weight"], imagenet["conv_stem.weight"])


def test_save_load_round_trip_gives_the_same_outputs_and_vocabulary(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    assert not list(tmp_path.glob("model/.*.tmp"))
    loaded = load_segmenter(tmp_path)  # the run folder works as well as model/
    assert loaded.config.type_names == NAMES and not loaded.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for key, value in tiny_model(x).items():
            torch.testing.assert_close(loaded(x)[key], value)


def test_loading_a_folder_without_a_model_says_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs config.json and model.safetensors"):
        load_segmenter(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type_names": {2: "a"}}, r"ids must be 1..K"),
        ({"encoder": "vit"}, "`encoder` must be one of"),
        ({"decoder_channels": (8, 8)}, "five positive widths"),
        ({"encoder": "resnet18", "pretrained": True}, "pass pretrained=False"),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmenterConfig(**kwargs)


def test_nhwc_default_gives_the_nchw_outputs_and_survives_save_load(tiny_model, tmp_path):
    conv = next(m for m in tiny_model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    nchw = NucleiSegmenter(tiny_model.config, channels_last=False).eval()
    nchw.load_state_dict(tiny_model.state_dict())
    assert next(m for m in nchw.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast, plain = tiny_model.eval()(images), nchw(images)
    for key in plain:  # the layout changes the arithmetic order only
        torch.testing.assert_close(fast[key], plain[key], rtol=1e-4, atol=1e-4)
    loaded = load_segmenter(tiny_model.save_pretrained(tmp_path / "m"))
    conv = next(m for m in loaded.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_hv_has_its_own_decoder_and_older_folders_load_with_a_shared_one(tmp_path):
    torch.manual_seed(0)
    model = NucleiSegmenter(SegmenterConfig(NAMES, pretrained=False)).eval()
    images = torch.rand(1, 3, 64, 64)
    before = model(images)
    with torch.no_grad():  # HoVer-Net's layout: the HV decoder feeds HV only, the other feeds NP and TP
        for p in model.hv_decoder.parameters():
            p.add_(0.1)
    after = model(images)
    torch.testing.assert_close(after[NP], before[NP])
    torch.testing.assert_close(after[TP], before[TP])
    assert not torch.allclose(after[HV], before[HV])
    # a folder written before the option (no key in config.json) is a one-decoder model
    shared = NucleiSegmenter(SegmenterConfig(NAMES, pretrained=False, separate_hv_decoder=False)).eval()
    assert shared.hv_decoder is None
    folder = shared.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["separate_hv_decoder"]
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_segmenter(folder)
    assert loaded.config.separate_hv_decoder is False
    torch.testing.assert_close(loaded(images)[HV], shared(images)[HV])
