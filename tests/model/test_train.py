"""train_msdm: the loss goes down, the export loads, a killed run resumes at its checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug.conditions import ConditionChannels, build_conditions, colour_stats
from synthaug.model import (
    MSDM,
    TextEmbeddingCache,
    TrainConfig,
    diffusion_loss,
    load_msdm,
    make_noise_scheduler,
    metadata_to_text,
    train_msdm,
)
from synthaug.model._reporting import read_loss_log
from synthaug.model.dataset import MSDMTrainDataset, mask_available
from tests.model.conftest import toy_sample

STEPS = 40
CHECKPOINT = 20


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(
        output_dir=out,
        resolution=32,
        batch_size=4,
        learning_rate=2e-3,
        steps=STEPS,
        model_size="tiny",
        checkpoint_every=CHECKPOINT,
        sample_every=0,
        num_grid_samples=2,
        grid_inference_steps=4,
        lr_warmup_steps=2,
        ema_decay=0.99,
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, toy_samples, text_cache) -> Path:
    return train_msdm(_config(tmp_path_factory.mktemp("run") / "out"), toy_samples, text_cache=text_cache)


def _fixed_batch(samples, cache: TextEmbeddingCache):
    channels = ConditionChannels()
    crops = [(s.image[:32, :32], s.inst[:32, :32], s.types[:32, :32]) for s in samples]
    colour = np.stack([colour_stats(im, inst).as_vector() for im, inst, _ in crops]).astype(np.float32)
    conds = np.stack(
        [
            build_conditions(inst, type_map=t, colour=c, channels=channels)
            for (_, inst, t), c in zip(crops, colour)
        ]
    )
    images = torch.from_numpy(np.stack([im for im, _, _ in crops])).permute(0, 3, 1, 2).float() / 127.5 - 1
    embeds, mask = cache.encode([metadata_to_text(s.meta) for s in samples])
    return images, torch.from_numpy(conds), embeds, mask, torch.from_numpy(colour)


@torch.no_grad()
def _fixed_loss(model: MSDM, batch, drop=None) -> float:
    scheduler = make_noise_scheduler()
    losses = [
        diffusion_loss(model, scheduler, *batch, drop=drop, generator=torch.Generator().manual_seed(k)).item()
        for k in range(8)
    ]
    return float(np.mean(losses))


def test_training_decreases_the_loss(trained_run: Path, toy_samples, text_cache):
    steps, losses = read_loss_log(trained_run / "loss.jsonl")
    assert steps.tolist() == list(range(1, STEPS + 1))
    assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses
    batch = _fixed_batch(toy_samples, text_cache)
    torch.manual_seed(0)
    untrained = MSDM.from_preset("tiny", sample_size=32).eval()
    trained = load_msdm(trained_run, expected_channels=ConditionChannels())
    assert _fixed_loss(trained, batch) < 0.7 * _fixed_loss(untrained, batch)


def test_trained_model_uses_the_mask_on_unseen_tiles(trained_run: Path, text_cache):
    # The point of MSDM: on masks it never saw, knowing the mask must make denoising easier.
    held_out = [toy_sample(seed) for seed in range(100, 108)]
    batch = _fixed_batch(held_out, text_cache)
    model = load_msdm(trained_run)
    no_mask = {"mask": torch.ones(len(held_out), dtype=torch.bool)}
    assert _fixed_loss(model, batch) < 0.9 * _fixed_loss(model, batch, drop=no_mask)


def test_run_folder_holds_the_export(trained_run: Path):
    assert (trained_run / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert (
        json.loads((trained_run / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
        == "v_prediction"
    )
    # The model records its own prediction type, so a bare model folder is sampled correctly.
    model_config = json.loads((trained_run / "model" / "config.json").read_text())
    assert model_config["prediction_type"] == "v_prediction"
    cache = TextEmbeddingCache.load(trained_run / "text_cache")
    summary = json.loads((trained_run / "training_summary.json").read_text())
    assert summary["steps"] == STEPS and summary["data"]["n_samples"] == 6
    assert summary["data"]["sources"] == {"toy": 6}
    # Two labels -> two prompts, both in the exported cache (which may hold more: the one passed in).
    assert len(summary["data"]["prompts"]) == 2 and set(summary["data"]["prompts"]) <= set(cache.strings)
    assert summary["config"]["condition_channels"] == ConditionChannels().to_dict()
    assert np.isfinite(summary["final_loss"])
    for png in ("loss.png", "samples/final.png"):
        assert (trained_run / png).stat().st_size > 1000


def test_killed_run_resumes_at_its_checkpoint(trained_run: Path, tmp_path, toy_samples, text_cache):
    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    # Simulate a run killed after its step-10 checkpoint: only checkpoint-000010 survives.
    shutil.rmtree(out / "checkpoints" / f"checkpoint-{STEPS:06d}")
    shutil.rmtree(out / "model")
    train_msdm(_config(out, steps=CHECKPOINT + 2, resume=True), toy_samples, text_cache=text_cache)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == CHECKPOINT + 2 and summary["steps_this_session"] == 2
    assert (out / "model" / "config.json").is_file()
    assert (out / "checkpoints" / f"checkpoint-{CHECKPOINT + 2:06d}" / "trainer_state.json").is_file()


def test_a_new_run_into_a_finished_run_folder_is_refused_and_changes_nothing(
    trained_run: Path, toy_samples, text_cache
):
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"already holds a training run \(model, scheduler.*--resume"):
        train_msdm(_config(trained_run, steps=2), toy_samples, text_cache=text_cache)
    assert {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()} == before


def test_the_cli_refuses_an_existing_run_before_fitting_anything(trained_run: Path, tmp_path, capsys):
    from synthaug.cli.main import main

    data = tmp_path / "data"  # never opened: the refusal comes first
    argv = ["train", "--data", str(data), "--out", str(trained_run), "--morphology-prompts", "--steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "synthaug train: error:" in err and "--resume" in err and "Traceback" not in err
    assert not (trained_run / "prompter").exists()
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--out", str(tmp_path / "new"), "--steps", "0"])
    assert "--steps: must be a positive integer" in capsys.readouterr().err


def test_label_level_samples_train_without_a_mask(tmp_path, text_cache):
    samples = [toy_sample(seed, with_mask=False) for seed in range(3)]
    out = train_msdm(
        _config(tmp_path / "out", steps=2, checkpoint_every=0, batch_size=3, num_grid_samples=1),
        samples,
        text_cache=text_cache,
    )
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["data"]["n_label_level"] == 3 and np.isfinite(summary["final_loss"])


def test_only_unannotated_sources_count_as_label_level():
    annotated, empty = toy_sample(0), toy_sample(1, with_mask=False)
    pcam_like = toy_sample(2, with_mask=False)
    pcam_like.meta["source"] = "pcam"
    # An empty tile of an annotated source is a real "no nuclei here" mask; a source without any
    # nucleus anywhere has no masks at all.
    assert mask_available([annotated, empty, pcam_like]) == [True, True, False]
    dataset = MSDMTrainDataset(
        [annotated, empty, pcam_like], channels=ConditionChannels(), resolution=32, text_ids=[0, 0, 0], seed=0
    )
    items = [dataset[i] for i in range(3)]
    assert [bool(it["has_mask"]) for it in items] == [True, True, False]
    assert (
        items[0]["image"].shape == (3, 32, 32)
        and -1 <= items[0]["image"].min() < items[0]["image"].max() <= 1
    )
    assert items[0]["conditions"].shape == (ConditionChannels().num_channels, 32, 32)


def test_augmentation_keeps_image_and_mask_aligned():
    dataset = MSDMTrainDataset(
        [toy_sample(3)], channels=ConditionChannels(), resolution=32, text_ids=[0], seed=1
    )
    for _ in range(8):  # random crops, flips, rot90 and colour jitter
        image, inst, _ = dataset.crop(0)
        if inst.any():
            gray = image.mean(axis=-1)
            # Toy nuclei are dark: after any geometry they must still sit under their mask.
            assert gray[inst > 0].mean() < gray[inst == 0].mean() - 60


def test_config_validation_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="prediction_type"):
        TrainConfig(tmp_path, prediction_type="sample")
    with pytest.raises(ValueError, match="condition_dropout"):
        TrainConfig(tmp_path, condition_dropout={"color": 0.1})
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(tmp_path, mixed_precision="fp8")
    with pytest.raises(ValueError, match="resolution"):
        train_msdm(TrainConfig(tmp_path, resolution=30, model_size="small"), [toy_sample(0)])


def test_warm_start_continues_from_the_exported_weights(tmp_path, trained_run, toy_samples, text_cache):
    # A later session has only the exported model/: training from it must start at those weights
    # and count the steps of both runs.
    config = _config(tmp_path / "next", init_from=trained_run, steps=1, lr_warmup_steps=0)
    before = load_msdm(trained_run).state_dict()
    out = train_msdm(config, toy_samples, text_cache=text_cache)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["warm_start_steps"] == STEPS and summary["total_steps"] == STEPS + 1
    after = load_msdm(out).state_dict()
    # One small step with EMA warm-up moves the weights, but only a little from where they were.
    drift = max((after[k] - before[k]).abs().max().item() for k in before)
    assert 0 < drift < 0.1
    assert not (out / "model.partial").exists() and not (out / "model.previous").exists()


def test_auto_mixed_precision_uses_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    from synthaug.model import train as train_module

    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda native=native: native)
        assert train_module.resolve_mixed_precision("auto", "cpu") == expected
    assert train_module.resolve_mixed_precision("fp16", "cpu") == "fp16"  # an explicit choice stays


def _state(run: Path) -> dict[str, torch.Tensor]:
    return load_msdm(run).state_dict()


def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(tmp_path, toy_samples, text_cache):
    # batch 2 of 6 samples: 3 batches per pass, so the step-4 checkpoint falls mid-pass and the
    # resumed run must continue the same pass in the same order, with the same crops and noise.
    config = dict(batch_size=2, steps=8, checkpoint_every=4)
    whole = train_msdm(_config(tmp_path / "whole", **config), toy_samples, text_cache=text_cache)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-000008")
    shutil.rmtree(cut / "model")
    (cut / "loss.jsonl").write_text("".join((whole / "loss.jsonl").read_text().splitlines(True)[:4]))
    train_msdm(_config(cut, resume=True, **config), toy_samples, text_cache=text_cache)
    assert read_loss_log(cut / "loss.jsonl")[1].tolist() == read_loss_log(whole / "loss.jsonl")[1].tolist()
    a, b = _state(whole), _state(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataloader_workers_change_nothing_but_speed(tmp_path, toy_samples, text_cache):
    runs = [
        train_msdm(_config(tmp_path / f"w{n}", batch_size=2, steps=3, num_workers=n), toy_samples,
                   text_cache=text_cache)
        for n in (0, 2)
    ]
    losses = [read_loss_log(run / "loss.jsonl")[1].tolist() for run in runs]
    assert losses[0] == losses[1]
    a, b = _state(runs[0]), _state(runs[1])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_counts_optimiser_steps(tmp_path, toy_samples, text_cache, monkeypatch):
    from synthaug.model import MSDM

    checked, check = [], MSDM.check_inputs
    monkeypatch.setattr(MSDM, "check_inputs", lambda self, *a, **k: checked.append(1) or check(self, *a, **k))
    out = train_msdm(
        _config(tmp_path / "acc", batch_size=2, steps=3, gradient_accumulation_steps=2, checkpoint_every=0),
        toy_samples, text_cache=text_cache,
    )
    steps, losses = read_loss_log(out / "loss.jsonl")
    assert steps.tolist() == [1, 2, 3] and np.isfinite(losses).all()
    state = json.loads((out / "checkpoints" / "checkpoint-000003" / "trainer_state.json").read_text())
    assert state == {"step": 3, "micro_batches": 6}  # two micro-batches of 2 per optimiser step
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 3
    assert checked == [1]  # the model's inputs are validated once per run, not per micro-batch


def test_runs_with_other_mixed_precisions_follow_each_other_in_one_process(tmp_path, toy_samples, text_cache):
    # accelerate keeps one process-wide state; a notebook that trains in fp32, then in bf16, must work
    for k, precision in enumerate(("no", "bf16", "no")):
        out = train_msdm(_config(tmp_path / f"run{k}", steps=1, mixed_precision=precision),
                         toy_samples, text_cache=text_cache)
        assert json.loads((out / "training_summary.json").read_text())["steps"] == 1
