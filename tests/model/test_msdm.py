"""MSDM forward, per-modality nulls, save/load and the condition-channels check."""

from __future__ import annotations

import pytest
import torch

from synthaug.conditions import ConditionChannels
from synthaug.model import MSDM, MSDMOutput, load_msdm

B, H = 2, 32


def _inputs(model: MSDM, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = model.condition_channels.num_channels
    return {
        "sample": torch.randn(B, 3, H, H, generator=g),
        "timestep": torch.tensor([10, 500]),
        "conditions": torch.rand(B, c, H, H, generator=g),
        "text_embeds": torch.randn(B, 7, 384, generator=g),
        "text_mask": torch.tensor([[True] * 7, [True] * 4 + [False] * 3]),
        "colour": torch.rand(B, 6, generator=g),
    }


def test_tiny_preset_size_and_output(tiny_model: MSDM):
    n = sum(p.numel() for p in tiny_model.parameters())
    assert 0.5e6 < n < 2.5e6, f"tiny preset has {n} parameters"
    out = tiny_model(**_inputs(tiny_model))
    assert isinstance(out, MSDMOutput) and out.sample.shape == (B, 3, H, H)
    (tup,) = tiny_model(**_inputs(tiny_model), return_dict=False)
    assert torch.equal(tup, out.sample)
    assert tiny_model.condition_channels == ConditionChannels()


@torch.no_grad()
@pytest.mark.parametrize("modality", ["mask", "text", "colour"])
def test_dropping_a_modality_changes_the_output_per_sample(tiny_model: MSDM, modality: str):
    model = tiny_model
    x = _inputs(model)
    full = model(**x).sample
    drop = {modality: torch.tensor([True, False])}
    dropped = model(**x, drop=drop).sample
    assert not torch.allclose(dropped[0], full[0], atol=1e-5), f"dropping {modality} had no effect"
    torch.testing.assert_close(dropped[1], full[1])  # the other sample keeps its conditions
    # Dropped = the modality's null: its input no longer matters.
    key = {"mask": "conditions", "text": "text_embeds", "colour": "colour"}[modality]
    other = dict(x, **{key: _inputs(model, seed=5)[key]})
    torch.testing.assert_close(model(**other, drop=drop).sample[0], dropped[0])
    # None means dropped for every sample.
    all_dropped = model(**x, drop={modality: torch.tensor([True, True])}).sample
    torch.testing.assert_close(model(**dict(x, **{key: None})).sample, all_dropped)


@torch.no_grad()
def test_save_load_gives_identical_outputs(tmp_path, tiny_model: MSDM):
    model = tiny_model
    x = _inputs(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    checked = load_msdm(tmp_path, expected_channels=ConditionChannels())
    for loaded in (MSDM.from_pretrained(tmp_path), checked):
        assert loaded.condition_channels == model.condition_channels
        torch.testing.assert_close(loaded(**x).sample, model(**x).sample, rtol=0, atol=0)


def test_load_refuses_mismatched_condition_channels(tmp_path, tiny_model: MSDM):
    tiny_model.save_pretrained(tmp_path)
    other = ConditionChannels(num_types=2, include=("mask", "hv", "types"))
    with pytest.raises(ValueError, match="condition channels") as err:
        load_msdm(tmp_path, expected_channels=other)
    assert "type_4" in str(err.value) and "'type_2']" in str(err.value)  # both channel sets are named
    with pytest.raises(FileNotFoundError, match="no MSDM"):
        load_msdm(tmp_path / "missing")


@torch.no_grad()
def test_a_config_saved_with_the_old_key_loads_with_its_channels(tmp_path):
    # Models saved before the rename store `condition_layout`: they must load with those channels,
    # not silently with the default ones.
    import json

    channels = ConditionChannels(num_types=2, include=("mask", "hv", "types"))
    model = MSDM.from_preset("tiny", condition_channels=channels)
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    config["condition_layout"] = config.pop("condition_channels")
    config_file.write_text(json.dumps(config))
    for loaded in (MSDM.from_pretrained(tmp_path), load_msdm(tmp_path, expected_channels=channels)):
        assert loaded.condition_channels == channels
        assert torch.equal(loaded.unet.conv_in.weight, model.unet.conv_in.weight)


def test_custom_condition_channels_set_input_channels():
    channels = ConditionChannels(num_types=2, include=("mask", "hv", "types"))
    model = MSDM.from_preset("tiny", condition_channels=channels)
    assert model.unet.config.in_channels == 3 + 5 + 1
    assert MSDM.from_config(model.config).condition_channels == channels


def test_check_inputs_names_the_bad_input(tiny_model: MSDM):
    x = _inputs(tiny_model)
    x.pop("timestep")
    check = tiny_model.check_inputs
    with pytest.raises(ValueError, match="channels but this model takes"):
        check(**dict(x, conditions=x["conditions"][:, :3]))
    with pytest.raises(ValueError, match="modality 'text' is missing"):
        check(**dict(x, text_embeds=None), drop={"text": torch.tensor([False, False])})
    with pytest.raises(ValueError, match="unknown modalities \\['color'\\]"):
        check(**x, drop={"color": torch.tensor([True, True])})
    with pytest.raises(ValueError, match="`colour` must be"):
        check(**dict(x, colour=x["colour"][:, :3]))
    with pytest.raises(ValueError, match="`text_embeds` must be"):
        check(**dict(x, text_embeds=x["text_embeds"][..., :100]))
    with pytest.raises(ValueError, match="multiples of 4"):
        check(**dict(x, sample=x["sample"][..., :30, :30], conditions=x["conditions"][..., :30, :30]))
    with pytest.raises(ValueError, match="bool tensor"):
        check(**x, drop={"mask": torch.tensor([1, 0])})
    check(**x)  # valid inputs pass


def test_forward_drops_a_missing_modality_whatever_drop_says(tiny_model: MSDM):
    # forward does not validate (no device sync per step); a missing input is its null for every sample.
    x = _inputs(tiny_model)
    with torch.no_grad():
        kept = tiny_model(**dict(x, text_embeds=None), drop={"text": torch.tensor([False, False])}).sample
        dropped = tiny_model(**dict(x, text_embeds=None)).sample
    assert torch.equal(kept, dropped)


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="`preset`"):
        MSDM.from_preset("huge")


@pytest.mark.parametrize("preset", ["tiny", "cpu", "small"])
def test_attention_heads_are_as_wide_as_the_preset_says(preset):
    # diffusers reads its `attention_head_dim` as a head *count*; MSDM's is the head width.
    from synthaug.model import MODEL_PRESETS

    model = MSDM.from_preset(preset)
    width = MODEL_PRESETS[preset]["attention_head_dim"]
    attentions = [m for m in model.unet.modules() if m.__class__.__name__ == "Attention"]
    assert attentions
    for attn in attentions:
        assert attn.inner_dim // attn.heads == width


def test_head_width_must_divide_the_blocks():
    with pytest.raises(ValueError, match="attention_head_dim"):
        MSDM.from_preset("tiny", attention_head_dim=24)
