"""Training draws stay paired through geometry, HV targets follow the transformed mask, runs resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug.augment import HVMaps
from synthaug.data.record import Sample
from synthaug.segment import SegmenterConfig, SegmenterTrainingConfig, load_segmenter, train_segmenter
from synthaug.segment.model import HV, NP, TP
from synthaug.segment.train import collate_batch, hovernet_loss, training_transform, typed_pixels

from .conftest import NAMES

TINY = SegmenterConfig(NAMES, encoder="resnet18", decoder_channels=(16, 16, 16, 8, 8), pretrained=False)


def _marked(sample: Sample) -> Sample:
    """The image's red channel is the foreground mask, so any misalignment after geometry shows."""
    image = sample.image.copy()
    image[..., 0] = np.where(sample.inst > 0, 255, 0)
    return Sample(image, sample.inst, sample.types, sample.inst_types, name=sample.name, group=sample.group)


def test_every_draw_keeps_image_masks_and_hv_targets_aligned(samples):
    transform = training_transform(64, seed=3)
    for i in range(12):
        d = transform(_marked(samples[i % len(samples)]).to_dict())
        inst = np.asarray(d["inst"])
        assert inst.shape == (1, 64, 64)
        # (contrast and blur move a few edge pixels; a flip or turn that missed the mask moves half)
        assert np.mean((np.asarray(d["image"])[0] > 0.5) != (inst[0] > 0)) < 0.01
        # HV targets are the HV maps of the mask as it is *after* the flips and turns
        np.testing.assert_allclose(np.asarray(d["hv_inst"]), HVMaps()(inst), atol=1e-6)
        batch = collate_batch([d], num_types=4)
        assert batch[NP].shape == (1, 2, 64, 64) and batch[HV].shape == (1, 2, 64, 64)
        tp = batch[TP][0].argmax(0).numpy()
        assert (tp[inst[0] == 0] == 0).all()  # types only inside nuclei
        np.testing.assert_array_equal(tp[inst[0] > 0], np.asarray(d["label"])[0][inst[0] > 0])


class _Killed(Exception):
    pass


class _KillAfter:
    """A transform that stands in for a killed process: it raises after ``n`` draws."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, d):
        self.n -= 1
        if self.n < 0:
            raise _Killed
        return d


def test_a_killed_run_resumes_from_its_checkpoint_and_matches_its_first_steps(samples, tmp_path):
    config = SegmenterTrainingConfig(steps=6, batch_size=2, crop=64, checkpoint_every=3, model=TINY)
    reference, ref_history = train_segmenter(samples, config, progress=False)
    with pytest.raises(RuntimeError, match="_KillAfter"):
        train_segmenter(samples, config, output_dir=tmp_path, synthetic=_KillAfter(9), progress=False)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and not (tmp_path / "model").exists()
    model, history = train_segmenter(samples, config, output_dir=tmp_path, progress=False)
    assert len(history.losses) == 6
    np.testing.assert_allclose(history.losses[:3], ref_history.losses[:3], rtol=1e-5)
    assert (tmp_path / "loss.png").stat().st_size > 5_000
    record = json.loads((tmp_path / "training_history.json").read_text())
    assert record["config"]["steps"] == 6 and len(record["losses"]) == 6
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_segmenter(tmp_path)(x)[NP], model(x)[NP])
    # a finished run is never overwritten
    with pytest.raises(ValueError, match="already holds a trained segmenter"):
        train_segmenter(samples, config, output_dir=tmp_path, progress=False)


def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_last_whole_one(samples, tmp_path, monkeypatch):
    config = SegmenterTrainingConfig(steps=8, batch_size=2, crop=64, checkpoint_every=3, model=TINY)
    # killed when step 6's tensors are on disk but its state.json has not yet replaced step 3's
    real_replace, moved = Path.replace, []

    def replace(self, target):
        if self.name == ".state.tmp":
            moved.append(target)
            if len(moved) == 2:
                raise _Killed
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(_Killed):
        train_segmenter(samples, config, output_dir=tmp_path / "torn", progress=False)
    monkeypatch.undo()
    state = json.loads((tmp_path / "torn" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and (tmp_path / "torn" / "checkpoint" / state["tensors"]).is_file()
    # the oracle: the same run killed cleanly between its checkpoints at steps 3 and 6
    with pytest.raises(RuntimeError, match="_KillAfter"):
        train_segmenter(
            samples, config, output_dir=tmp_path / "clean", synthetic=_KillAfter(9), progress=False
        )
    torn = train_segmenter(samples, config, output_dir=tmp_path / "torn", progress=False)[0]
    clean = train_segmenter(samples, config, output_dir=tmp_path / "clean", progress=False)[0]
    for (name, a), b in zip(torn.state_dict().items(), clean.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # only the last checkpoint's tensors are kept
    kept = [p.name for p in (tmp_path / "clean" / "checkpoint").glob("tensors*")]
    assert kept == ["tensors-0000006.safetensors"]


def test_a_checkpoint_of_other_settings_is_refused(samples, tmp_path):
    config = SegmenterTrainingConfig(steps=4, batch_size=2, crop=64, checkpoint_every=2, model=TINY)
    with pytest.raises(RuntimeError, match="_KillAfter"):
        train_segmenter(samples, config, output_dir=tmp_path, synthetic=_KillAfter(5), progress=False)
    other = SegmenterTrainingConfig(steps=4, batch_size=2, crop=64, checkpoint_every=2, lr=5e-4, model=TINY)
    with pytest.raises(ValueError, match="checkpoint of another configuration"):
        train_segmenter(samples, other, output_dir=tmp_path, progress=False)


def test_the_seed_decides_the_run(samples):
    config = SegmenterTrainingConfig(steps=2, batch_size=2, crop=64, checkpoint_every=0, model=TINY)
    a = train_segmenter(samples, config, progress=False)[1].losses
    b = train_segmenter(samples, config, progress=False)[1].losses
    c = train_segmenter(
        samples, SegmenterTrainingConfig(steps=2, batch_size=2, crop=64, seed=1, model=TINY), progress=False
    )[1].losses
    assert a == b and a != c


class _AllSynthetic:
    """A stand-in for SyntheticAugment that swaps every draw it sees, counting them."""

    def __init__(self):
        self.calls = 0

    def __call__(self, d):
        self.calls += 1
        return {**d, "is_synthetic": True}


def test_synthetic_draws_are_counted_per_draw(samples):
    config = SegmenterTrainingConfig(steps=2, batch_size=3, crop=64, checkpoint_every=0, model=TINY)
    history = train_segmenter(samples, config, synthetic=_AllSynthetic(), progress=False)[1]
    assert history.draws == 6 and history.synthetic_fraction == 1.0


def test_synthetic_draws_stop_after_synthetic_until_of_the_steps(samples):
    config = SegmenterTrainingConfig(
        steps=6, batch_size=2, crop=64, checkpoint_every=0, synthetic_until=0.5, model=TINY
    )
    swap = _AllSynthetic()
    history = train_segmenter(samples, config, synthetic=swap, progress=False)[1]
    # steps 1-3 may draw synthetic pairs, steps 4-6 see real tiles only (the swap is never asked)
    assert swap.calls == 6 and history.draws == 12 and history.synthetic_fraction == 0.5
    assert len(history.losses) == 6
    none = SegmenterTrainingConfig(
        steps=2, batch_size=2, crop=64, checkpoint_every=0, synthetic_until=0, model=TINY
    )
    assert train_segmenter(samples, none, synthetic=_AllSynthetic(), progress=False)[1].synthetic_draws == 0
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match="`synthetic_until` must be a share of the steps"):
            SegmenterTrainingConfig(synthetic_until=bad, model=TINY)
    for bad in ("half", True, None):
        with pytest.raises(TypeError, match="`synthetic_until` must be a number"):
            SegmenterTrainingConfig(synthetic_until=bad, model=TINY)


def test_a_run_killed_before_the_switch_resumes_into_real_only_steps(samples, tmp_path):
    config = SegmenterTrainingConfig(
        steps=6, batch_size=2, crop=64, checkpoint_every=2, synthetic_until=0.5, model=TINY
    )
    with pytest.raises(RuntimeError, match="_KillAfter"):  # dies in step 3, the last synthetic one
        train_segmenter(samples, config, output_dir=tmp_path, synthetic=_KillAfter(5), progress=False)
    swap = _AllSynthetic()
    history = train_segmenter(samples, config, output_dir=tmp_path, synthetic=swap, progress=False)[1]
    assert swap.calls == 2  # step 3 again; steps 4-6 real
    # (the killed run's stand-in swapped nothing, so only step 3's two draws count as synthetic)
    assert len(history.losses) == 6 and history.draws == 12 and history.synthetic_draws == 2


class _Names:
    """A pass-through transform that records which training sample each draw came from."""

    def __init__(self):
        self.names = []

    def __call__(self, d):
        self.names.append(d["name"])
        return d


def test_draws_follow_draw_weights(samples):
    config = SegmenterTrainingConfig(steps=4, batch_size=3, crop=64, checkpoint_every=0, model=TINY)
    seen = _Names()
    weights = [0, 0, 1, 0, 3, 0]  # only samples 2 and 4 may be drawn
    train_segmenter(samples, config, synthetic=seen, draw_weights=weights, progress=False)
    assert set(seen.names) == {samples[2].name, samples[4].name} and len(seen.names) == 12
    again = _Names()
    train_segmenter(samples, config, synthetic=again, draw_weights=weights, progress=False)
    assert again.names == seen.names  # the seed fixes the weighted order too
    for bad, message in (([1, 2], "one weight per training sample"), ([0] * 6, "at least one above zero")):
        with pytest.raises(ValueError, match=message):
            train_segmenter(samples, config, draw_weights=bad, progress=False)
    with pytest.raises(ValueError, match="finite and non-negative"):
        train_segmenter(samples, config, draw_weights=[1, -1, 1, 1, 1, 1], progress=False)


def _loss_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    preds = {
        NP: torch.randn(3, 2, 16, 16, generator=g, requires_grad=True),
        HV: torch.randn(3, 2, 16, 16, generator=g, requires_grad=True),
        TP: torch.randn(3, 5, 16, 16, generator=g, requires_grad=True),
    }
    fg = torch.rand(3, 16, 16, generator=g) > 0.6
    types = torch.where(fg, torch.randint(1, 5, (3, 16, 16), generator=g), 0)
    truth = {
        NP: torch.nn.functional.one_hot(fg.long(), 2).permute(0, 3, 1, 2).float(),
        HV: torch.rand(3, 2, 16, 16, generator=g) * 2 - 1,
        TP: torch.nn.functional.one_hot(types, 5).permute(0, 3, 1, 2).float(),
    }
    return preds, truth


def _masked_tp_oracle(pred, true, kept, smooth=1e-3):
    """MONAI's TP terms written out on the kept pixels only: Dice summed over channels + mean CE."""
    p = torch.softmax(pred, dim=1).permute(1, 0, 2, 3)[:, kept]  # (channels, kept pixels)
    t = true.permute(1, 0, 2, 3)[:, kept]
    dice = (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).sum()
    ce = -torch.log(p[t.argmax(0), torch.arange(p.shape[1])]).mean()
    return dice + ce


def test_types_can_be_learnt_from_real_draws_only():
    from monai.apps.pathology.losses import HoVerNetLoss

    loss_fn = HoVerNetLoss()
    preds, truth = _loss_inputs()
    without_tp = loss_fn({k: preds[k] for k in (NP, HV)}, {k: truth[k] for k in (NP, HV)})
    # every draw typed: exactly MONAI's loss
    everyone = torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(hovernet_loss(loss_fn, preds, truth, typed=everyone), loss_fn(preds, truth))
    # draws 0 and 2 typed: MONAI's own TP terms on those two draws
    rows = torch.tensor([True, False, True])
    typed = {k: v[rows] for k, v in preds.items()}, {k: v[rows] for k, v in truth.items()}
    tp_of_rows = loss_fn(*typed) - loss_fn(*({k: d[k] for k in (NP, HV)} for d in typed))
    torch.testing.assert_close(hovernet_loss(loss_fn, preds, truth, typed=rows), without_tp + tp_of_rows)
    # draw 1 synthetic: its TP logits get no gradient, its NP and HV logits still do
    hovernet_loss(loss_fn, preds, truth, typed=rows).backward()
    assert preds[TP].grad[1].abs().max() == 0 and preds[TP].grad[0].abs().max() > 0
    assert preds[NP].grad[1].abs().max() > 0 and preds[HV].grad[1].abs().max() > 0
    # no real draw in the batch: no type terms at all
    torch.testing.assert_close(
        hovernet_loss(loss_fn, preds, truth, typed=torch.zeros(3, dtype=torch.bool)), without_tp
    )


def test_types_can_be_learnt_from_chosen_pixels_only():
    from monai.apps.pathology.losses import HoVerNetLoss

    loss_fn = HoVerNetLoss()
    preds, truth = _loss_inputs(seed=1)
    kept = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5
    loss = hovernet_loss(loss_fn, preds, truth, typed=kept)
    without_tp = loss_fn({k: preds[k] for k in (NP, HV)}, {k: truth[k] for k in (NP, HV)})
    torch.testing.assert_close(loss, without_tp + _masked_tp_oracle(preds[TP], truth[TP], kept))
    loss.backward()
    grad = preds[TP].grad.abs().amax(dim=1)
    assert grad[~kept].max() == 0 and (grad[kept] > 0).all()  # no pixel left out trains the type head
    torch.testing.assert_close(  # every pixel chosen: MONAI's loss
        hovernet_loss(loss_fn, preds, truth, typed=torch.ones(3, 16, 16, dtype=torch.bool)),
        loss_fn(preds, truth),
    )
    with pytest.raises(ValueError, match="`typed` must be"):
        hovernet_loss(loss_fn, preds, truth, typed=torch.ones(3, 8, 8, dtype=torch.bool))


def test_synthetic_draws_type_only_background_and_the_named_types():
    types = torch.tensor([[[0, 1, 2, 3]], [[0, 1, 2, 3]]])  # (B=2, H=1, W=4): draw 1 is synthetic
    batch = {
        TP: torch.nn.functional.one_hot(types, 5).permute(0, 3, 1, 2).float(),
        "is_synthetic": torch.tensor([False, True]),
    }
    config = SegmenterTrainingConfig(synthetic_types=(NAMES[3],), model=TINY)
    assert config.synthetic_types == (3,)
    kept = typed_pixels(batch, config.synthetic_types)
    assert kept.tolist() == [[[True, True, True, True]], [[True, False, False, True]]]
    assert typed_pixels(batch, False).tolist() == [True, False] and typed_pixels(batch, True) is None
    # names and ids mean the same types; the setting survives the JSON of a checkpoint
    assert SegmenterTrainingConfig(synthetic_types=[3, NAMES[1]], model=TINY).synthetic_types == (1, 3)
    assert SegmenterTrainingConfig(synthetic_types=np.array([3]), model=TINY).synthetic_types == (3,)
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    assert SegmenterTrainingConfig(**record).synthetic_types == (3,)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("no", TypeError, "must be True, False or a non-empty sequence"),
        ((), TypeError, "must be True, False or a non-empty sequence"),
        (("mitotic",), ValueError, "`synthetic_types` 'mitotic' is not a type here"),
        ((9,), ValueError, "`synthetic_types` 9 is not a type here"),
    ],
)
def test_bad_synthetic_types_are_refused(value, error, message):
    with pytest.raises(error, match=message):
        SegmenterTrainingConfig(synthetic_types=value, model=TINY)


@pytest.mark.parametrize("synthetic_types", [False, (NAMES[3],)])
def test_training_runs_with_all_synthetic_batches(samples, synthetic_types):
    config = SegmenterTrainingConfig(
        steps=2, batch_size=2, crop=64, checkpoint_every=0, synthetic_types=synthetic_types, model=TINY
    )
    history = train_segmenter(samples, config, synthetic=_AllSynthetic(), progress=False)[1]
    assert history.synthetic_fraction == 1.0 and all(np.isfinite(history.losses))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop": 100}, "`crop` must be divisible by 32"),
        ({"steps": 0}, "`steps` must be a positive integer"),
        ({"lr": -1.0}, "`lr` must be a positive number"),
    ],
)
def test_bad_training_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmenterTrainingConfig(model=TINY, **kwargs)


def test_tiles_smaller_than_the_crop_are_refused(samples):
    with pytest.raises(ValueError, match="smaller than `crop`=128"):
        train_segmenter(samples, SegmenterTrainingConfig(crop=128, model=TINY), progress=False)
    with pytest.raises(ValueError, match="non-empty sequence"):
        train_segmenter([], SegmenterTrainingConfig(model=TINY), progress=False)
