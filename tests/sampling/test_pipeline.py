"""MSDMPipeline: reproducibility, one batched forward for per-modality guidance, inputs, schedulers."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from synthaug.model import TextEmbeddingCache, make_noise_scheduler
from synthaug.model.sampler import set_sampling_timesteps
from synthaug.sampling.pipeline import SCHEDULERS, MSDMPipeline, make_scheduler

from .conftest import COLOUR, FAST, SIZE


def _call(pipe, records, seeds, **kwargs):
    return pipe(
        [r.inst for r in records], type_map=[r.types for r in records], meta=[r.meta for r in records],
        colour=np.stack([COLOUR] * len(records)),
        generator=[torch.Generator().manual_seed(s) for s in seeds], **{**FAST, **kwargs},
    )


def test_same_seed_gives_identical_bytes_whatever_the_batch(pipeline, masks):
    records = [masks[i] for i in range(3)]
    first = _call(pipeline, records, [10, 11, 12]).images
    again = _call(pipeline, records, [10, 11, 12]).images
    assert first.shape == (3, SIZE, SIZE, 3) and first.dtype == np.uint8
    assert first.tobytes() == again.tobytes()
    # a tile depends on its own mask and generator only, not on its batch neighbours
    alone = _call(pipeline, records[1:2], [11]).images
    assert np.abs(alone[0].astype(int) - first[1]).max() <= 1
    other = _call(pipeline, records[:1], [99]).images
    assert np.abs(other[0].astype(int) - first[0]).mean() > 1


def test_guidance_runs_one_forward_and_combines_per_modality(pipeline, masks):
    record = masks[0]
    b = 2
    conditions = pipeline.encode_conditions(
        [record.inst] * b, [record.types] * b, [None] * b, [COLOUR] * b, "cpu"
    )
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(b, 3, SIZE, SIZE, generator=g)
    text = torch.randn(b, 5, pipeline.model.config.text_embed_dim, generator=g)
    text_mask = torch.ones(b, 5, dtype=torch.bool)
    colour = torch.from_numpy(np.stack([COLOUR] * b))
    t = torch.tensor(500)
    pipeline.scheduler.set_timesteps(4)

    batches = []
    hook = pipeline.model.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        guided = pipeline.guided_model_output(
            latents, t, conditions, text, text_mask, colour, {"mask": 1.0, "text": 3.0, "colour": 0.5}
        )
    finally:
        hook.remove()
    assert batches == [3 * b]  # full + without-text + without-colour in ONE forward; mask (w=1) skipped

    def eps(**drop):
        flags = {m: torch.full((b,), True) for m in drop}
        return pipeline.model(latents, t, conditions, text, text_mask, colour, drop=flags).sample

    full, no_text, no_colour = eps(), eps(text=True), eps(colour=True)
    expected = full + 2.0 * (full - no_text) - 0.5 * (full - no_colour)
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-4)


def test_a_single_zero_weight_is_the_prediction_without_that_modality_in_one_copy(pipeline, masks):
    record = masks[0]
    conditions = pipeline.encode_conditions([record.inst], [record.types], [None], [COLOUR], "cpu")
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 3, SIZE, SIZE, generator=g)
    text = torch.randn(1, 5, pipeline.model.config.text_embed_dim, generator=g)
    text_mask = torch.ones(1, 5, dtype=torch.bool)
    colour = torch.from_numpy(COLOUR[None])
    t = torch.tensor(700)
    batches = []
    hook = pipeline.model.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        ignored = pipeline.guided_model_output(latents, t, conditions, text, text_mask, colour, {"mask": 0.0})
    finally:
        hook.remove()
    assert batches == [1]
    drop = {"mask": torch.tensor([True])}
    expected = pipeline.model(latents, t, conditions, text, text_mask, colour, drop=drop).sample
    torch.testing.assert_close(ignored, expected, atol=1e-5, rtol=1e-4)


def test_output_types_agree(pipeline, masks):
    records = [masks[0]]
    as_np = _call(pipeline, records, [3]).images
    as_pt = _call(pipeline, records, [3], output_type="pt").images
    as_pil = _call(pipeline, records, [3], output_type="pil").images
    assert as_pt.shape == (1, 3, SIZE, SIZE) and 0 <= float(as_pt.min()) and float(as_pt.max()) <= 1
    np.testing.assert_array_equal((as_pt * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), as_np)
    assert isinstance(as_pil[0], PIL.Image.Image) and np.array_equal(np.asarray(as_pil[0]), as_np[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inst": np.zeros((15, 15), np.int32)}, r"divisible by \d+ but are 15x15"),
        ({"guidance": {"style": 2.0}}, r"`guidance` keys must be among"),
        ({"guidance": {"text": -1}}, r"`guidance\['text'\]` must be a finite number >= 0, got -1"),
        ({"num_inference_steps": 0}, "`num_inference_steps` must be a positive integer, got 0"),
        ({"output_type": "jpg"}, "`output_type` must be one of"),
        ({"generator": [torch.Generator()] * 2}, "list of 2 but 1 masks"),
        ({"type_map": np.zeros((8, 8), np.uint8)}, r"`type_map` 0 has shape \(8, 8\)"),
    ],
)
def test_check_inputs_names_the_bad_value(pipeline, kwargs, message):
    kwargs = {"inst": np.zeros((SIZE, SIZE), np.int32), **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline(kwargs.pop("inst"), **kwargs)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_schedulers_are_swappable_and_reproducible(tiny_model, masks, name):
    config = make_noise_scheduler(prediction_type="v_prediction").config
    scheduler = make_scheduler(name, config)
    assert isinstance(scheduler, SCHEDULERS[name][0])
    assert scheduler.config.prediction_type == "v_prediction"  # the training schedule carries over
    assert scheduler.config.beta_schedule == config.beta_schedule
    pipe = MSDMPipeline(tiny_model, scheduler, None)
    # DDPM draws fresh noise every step: from the per-sample generators, so still reproducible
    out = [_call(pipe, [masks[0]], [5], num_inference_steps=2).images for _ in range(2)]
    assert out[0].tobytes() == out[1].tobytes()


def test_dpm_solver_plus_plus_is_the_default():
    scheduler = make_scheduler("dpm", make_noise_scheduler().config)
    assert scheduler.config.algorithm_type == "dpmsolver++"
    with pytest.raises(ValueError, match="`name` must be one of"):
        make_scheduler("euler", make_noise_scheduler().config)


def test_save_and_load_round_trip(tiny_model, masks, tmp_path):
    scheduler = make_scheduler("unipc", make_noise_scheduler().config)
    pipe = MSDMPipeline(tiny_model, scheduler, TextEmbeddingCache())
    pipe.save_pretrained(tmp_path)
    loaded = MSDMPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, SCHEDULERS["unipc"][0])
    assert isinstance(loaded.text_cache, TextEmbeddingCache)  # the prompt table travels with the model
    # meta=None: no prompt, so BERT is never loaded
    before, after = (
        p(masks[0].inst, type_map=masks[0].types, colour=COLOUR, generator=torch.Generator().manual_seed(4),
          **FAST).images
        for p in (pipe, loaded)
    )
    assert before.tobytes() == after.tobytes()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_starts_at_the_last_training_step_also_from_disk(name, tmp_path):
    # A sampler that starts below t=999 begins from an input the model never saw as pure noise.
    make_noise_scheduler().save_pretrained(tmp_path)
    from diffusers import DDPMScheduler

    for config in (make_noise_scheduler().config, DDPMScheduler.load_config(tmp_path)):
        scheduler = make_scheduler(name, config)
        for steps in (4, 10, 25):
            set_sampling_timesteps(scheduler, steps)
            assert int(scheduler.timesteps[0]) == 999, (name, steps, scheduler.timesteps[:3])
            assert len(scheduler.timesteps) == steps and int(scheduler.timesteps[-1]) == 0
            scheduler.set_timesteps(steps)  # the scheduler's own grid is trailing, also from disk
            assert int(scheduler.timesteps[0]) == 999, (name, steps, scheduler.timesteps[:3])


def test_a_scheduler_that_disagrees_with_the_model_is_refused():
    config = make_noise_scheduler("epsilon").config
    with pytest.raises(ValueError, match="v_prediction"):
        make_scheduler("dpm", config, prediction_type="v_prediction")
    assert make_scheduler("dpm", config, prediction_type="epsilon").config.prediction_type == "epsilon"


def test_missing_or_empty_metadata_samples_with_the_learned_text_null(tiny_model, masks):
    # "" was never a training prompt: a sample without usable metadata must get the text null,
    # also beside samples that have text (their text is guided, its row is not).
    scheduler = make_scheduler("dpm", make_noise_scheduler().config)
    pipe = MSDMPipeline(tiny_model, scheduler, TextEmbeddingCache())
    pipe.mixed_precision = "no"  # compares rows of differently composed batches (see the bf16 test)
    first, second = masks[0], masks[1]
    kwargs = {"num_inference_steps": 2, "guidance": {"text": 2.0}}

    def gen(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    null = pipe(first.inst, type_map=first.types, meta=None, generator=gen(3), **kwargs).images[0]
    for empty in ({}, {"unrelated": "key"}, ""):
        mixed = pipe([first.inst, second.inst], type_map=[first.types, second.types],
                     meta=[empty, second.meta], generator=gen(3, 4), **kwargs).images
        assert np.abs(mixed[0].astype(int) - null).max() <= 1, empty
    with_text = pipe(first.inst, type_map=first.types, meta=second.meta, generator=gen(3), **kwargs).images[0]
    assert np.abs(with_text.astype(int) - null).mean() > 0.5  # the text does reach the model


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -0.5, True, "2"])
def test_guidance_weights_must_be_finite_non_negative_numbers(weight):
    from synthaug.sampling.pipeline import check_guidance

    with pytest.raises(ValueError, match=r"guidance\['text'\]` must be a finite number >= 0"):
        check_guidance({"text": weight})
    with pytest.raises(ValueError, match="keys must be among"):
        check_guidance({"texture": 1.0})
    check_guidance({"mask": 0.0, "text": 2.0, "colour": 1})


def test_bf16_autocast_stays_close_to_fp32_and_is_the_default_only_where_native(pipeline, masks, monkeypatch):
    from synthaug.model import train as train_module

    def images(precision):
        pipeline.mixed_precision = precision
        try:
            return _call(pipeline, [masks[0], masks[1]], [5, 6], num_inference_steps=2).images.astype(int)
        finally:
            pipeline.mixed_precision = "no"

    fp32, bf16 = images("no"), images("bf16")
    # bf16 rounds the network's matmuls: a pixel moves by a few levels at most, not a different tile
    assert 0 < np.abs(bf16 - fp32).mean() < 2.0 and np.abs(bf16 - fp32).max() <= 16
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda native=native: native)
        assert train_module.resolve_mixed_precision("auto", "cpu") == expected
    pipeline.mixed_precision = "float8"
    with pytest.raises(ValueError, match="pipeline.mixed_precision"):
        _call(pipeline, [masks[0]], [5], num_inference_steps=1)
    pipeline.mixed_precision = "no"


# Output of the tiny seeded model (fixture `tiny_model`: torch.manual_seed(0), "tiny" preset, 16 px)
# on the first layout mask, seed 0, DPM-Solver++ 2 steps, colour guidance 2, fp32: the last 3x3
# pixels of each channel. Recorded 2026-12-04 with torch 2.14.1 and diffusers 0.42.1, the versions
# .ci/constraints.txt pins.
GOLDEN_SLICE = [
    0.7261, 0.6680, 0.6290, 0.6350, 0.6242, 0.5543, 0.6109, 0.7701, 0.6161,
    0.6144, 0.4937, 0.4829, 0.6552, 0.6285, 0.4279, 0.6952, 0.5792, 0.5035,
    0.4598, 0.4215, 0.5200, 0.5794, 0.6495, 0.4553, 0.4657, 0.5631, 0.6586,
]


def test_golden_output_of_a_tiny_seeded_model_is_unchanged(pipeline, masks):
    # A regression guard in the diffusers manner: any change to conditioning, guidance, the
    # scheduler's timesteps or the output conversion moves these numbers. If a change is meant,
    # say why in the commit and record the new slice.
    images = _call(pipeline, [masks[0]], [0], output_type="pt").images
    got = images[0, :, -3:, -3:].flatten()
    torch.testing.assert_close(got, torch.tensor(GOLDEN_SLICE), atol=1e-3, rtol=0)


def test_the_model_inputs_are_validated_once_per_call_not_per_step(pipeline, masks, monkeypatch):
    checked, check = [], type(pipeline.model).check_inputs
    monkeypatch.setattr(
        type(pipeline.model), "check_inputs", lambda self, *a, **k: checked.append(1) or check(self, *a, **k)
    )
    _call(pipeline, [masks[0]], [0], num_inference_steps=3)
    assert checked == [1]
