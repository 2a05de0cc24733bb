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


@pytest.mark.parametrize(
    ("decoders", "feeds"),
    [(3, {"hv_decoder": {HV}, "tp_decoder": {TP}}), (2, {"hv_decoder": {HV}}), (1, {})],
)
def test_each_branch_reads_its_own_decoder(decoders, feeds):
    torch.manual_seed(0)
    model = NucleiSegmenter(SegmenterConfig(NAMES, pretrained=False, decoders=decoders)).eval()
    images = torch.rand(1, 3, 64, 64)
    before = model(images)
    # HoVer-Net's layout: a branch's own decoder feeds that branch only; the first feeds the rest
    for name in ("decoder", "hv_decoder", "tp_decoder"):
        decoder = getattr(model, name)
        assert (decoder is not None) == (name == "decoder" or name in feeds)
        if decoder is None:
            continue
        with torch.no_grad():
            for p in decoder.parameters():
                p.add_(0.1)
        after = model(images)
        fed = feeds.get(name, {NP, HV, TP} - set().union(*feeds.values()))
        for branch in (NP, HV, TP):
            assert torch.allclose(after[branch], before[branch]) == (branch not in fed), (name, branch)
        before = after


def test_folders_saved_before_the_decoders_option_load_as_they_were(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(1, 3, 64, 64)
    for old_key, decoders in (
        ({}, 1),
        ({"separate_hv_decoder": False}, 1),
        ({"separate_hv_decoder": True}, 2),
    ):
        model = NucleiSegmenter(SegmenterConfig(NAMES, pretrained=False, decoders=decoders)).eval()
        folder = model.save_pretrained(tmp_path / f"old{len(old_key)}{decoders}")
        config = json.loads((folder / "config.json").read_text())
        del config["decoders"]
        (folder / "config.json").write_text(json.dumps(config | old_key))
        loaded = load_segmenter(folder)
        assert loaded.config.decoders == decoders
        torch.testing.assert_close(loaded(images)[HV], model(images)[HV])
    with pytest.raises(ValueError, match="decoders"):
        SegmenterConfig(NAMES, decoders=4)
    # without types there is no TP branch: three decoders build two
    assert NucleiSegmenter(SegmenterConfig({}, pretrained=False)).tp_decoder is None
