"""Post-processing against an exact oracle: perfect NP/HV/TP maps give back the true nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.conditions import compute_hv_maps, instance_type_votes
from synthaug.metrics import panoptic_quality
from synthaug.segment import centroids_of, predict_nuclei, score_predictions
from synthaug.segment.model import HV, NP, TP
from synthaug.segment.predict import FlipAveraged, network_outputs, postprocess

from .conftest import NAMES, toy_sample


def perfect_outputs(sample, num_types: int = 4) -> dict[str, torch.Tensor]:
    """The outputs a perfect network would give: confident NP/TP logits and the exact HV maps."""
    fg = (sample.inst > 0).astype(np.float32)
    np_logits = np.stack([1 - fg, fg]) * 20 - 10
    tp = np.eye(num_types + 1, dtype=np.float32)[np.where(sample.inst > 0, sample.types, 0)]
    return {
        NP: torch.from_numpy(np_logits),
        HV: torch.from_numpy(compute_hv_maps(sample.inst)),
        TP: torch.from_numpy(np.moveaxis(tp, -1, 0) * 20 - 10),
    }


@pytest.mark.parametrize("seed", [0, 5])
def test_perfect_maps_split_touching_nuclei_and_keep_their_types(seed):
    # HoVer-Net's own marker threshold (0.4) on exact HV maps; tiles where many nuclei touch
    sample = toy_sample(seed, size=128, gap=0)  # gap 0: nuclei touch, the watershed must split them
    assert len(np.unique(sample.inst)) - 1 >= 10
    prediction = postprocess(perfect_outputs(sample))
    pq = panoptic_quality(sample.inst, prediction.inst)
    # A connected-components baseline on the same perfect foreground merges touching nuclei.
    from skimage.measure import label

    merged = panoptic_quality(sample.inst, label(sample.inst > 0, connectivity=1).astype(np.int32))
    assert pq.dq > 0.9 and pq.sq > 0.9 and pq.pq > merged.pq + 0.05
    table = score_predictions([sample], [prediction], NAMES)
    assert table["F1_detection"] > 0.85 and table["accuracy_type"] > 0.95


def test_prediction_ids_are_contiguous_and_centroids_follow_them():
    sample = toy_sample(5, size=96)
    prediction = postprocess(perfect_outputs(sample))
    ids = np.unique(prediction.inst[prediction.inst > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1)) == sorted(prediction.inst_types)
    assert prediction.centroids.shape == (len(ids), 2)
    rows, cols = np.nonzero(prediction.inst == 1)
    np.testing.assert_allclose(prediction.centroids[0], [rows.mean(), cols.mean()])
    # each instance's type is the one painted under it
    votes = instance_type_votes(prediction.inst, prediction.types)[1]
    assert votes.tolist() == [prediction.inst_types[i] for i in ids]


def test_centroids_of_handles_gaps_in_the_ids():
    inst = np.zeros((10, 10), np.int32)
    inst[0:2, 0:2] = 4
    inst[5:9, 6:8] = 9
    np.testing.assert_allclose(centroids_of(inst), [[0.5, 0.5], [6.5, 6.5]])
    assert centroids_of(np.zeros((4, 4), np.int32)).shape == (0, 2)


def test_any_tile_size_gives_maps_of_that_size(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (150, 203, 3), dtype=np.uint8)
    prediction = predict_nuclei(tiny_model, image, roi_size=64, overlap=0.25)
    assert prediction.inst.shape == prediction.types.shape == (150, 203)
    # a float image in [0, 1] is the same input
    again = predict_nuclei(tiny_model, image.astype(np.float32) / 255.0, roi_size=64)
    np.testing.assert_array_equal(prediction.inst, again.inst)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"roi_size": 100}, ValueError, "`roi_size` must be a positive multiple of 32"),
        ({"overlap": 1.0}, ValueError, r"`overlap` must be in \[0, 1\)"),
        ({"image": np.zeros((8, 8), np.uint8)}, ValueError, r"RGB image of shape \(H, W, 3\)"),
    ],
)
def test_bad_prediction_input_is_named(tiny_model, kwargs, error, message):
    args = {"image": np.zeros((64, 64, 3), np.uint8), **kwargs}
    with pytest.raises(error, match=message):
        predict_nuclei(tiny_model, **args)


class _OracleNet(torch.nn.Module):
    """A 'network' that reads the instance ids painted in its red channel and returns perfect maps."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = []
        for image in images:
            inst = np.rint(image[0].numpy() * 255).astype(np.int32)
            types = np.rint(image[1].numpy() * 255).astype(np.int32)
            outputs.append(perfect_outputs(type("S", (), {"inst": inst, "types": types})()))
        return {k: torch.stack([o[k] for o in outputs]) for k in outputs[0]}


def test_flip_averaging_of_perfect_maps_gives_them_back():
    # The oracle's HV maps follow compute_hv_maps' convention: wrong signs would cancel in the mean.
    sample = toy_sample(3, size=64)
    image = np.stack([sample.inst, sample.types, np.zeros_like(sample.inst)]).astype(np.float32) / 255
    batch = torch.from_numpy(image)[None]
    plain, averaged = _OracleNet()(batch), FlipAveraged(_OracleNet())(batch)
    assert np.abs(plain[HV].numpy()).max() == 1.0
    for name in (NP, HV, TP):
        torch.testing.assert_close(averaged[name], plain[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dims", [(-1,), (-2,), (-2, -1)])
def test_flip_averaged_outputs_follow_a_flip_of_the_input(tiny_model, dims):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    averaged = FlipAveraged(tiny_model)
    with torch.no_grad():
        direct, flipped = averaged(images), averaged(images.flip(dims))
    for name, value in direct.items():
        expected = value.flip(dims)
        if name == HV:  # a left-right flip negates the horizontal offset, an up-down one the vertical
            expected = expected * torch.tensor(
                [-1.0 if -1 in dims else 1.0, -1.0 if -2 in dims else 1.0]
            ).view(1, 2, 1, 1)
        torch.testing.assert_close(flipped[name], expected, atol=1e-4, rtol=1e-4)
    # and it is not the single pass: a random network is far from flip-equivariant on its own
    with torch.no_grad():
        assert not torch.allclose(tiny_model(images)[NP], direct[NP], atol=1e-3)


def test_tta_off_is_one_forward_pass(tiny_model):
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    single = network_outputs(tiny_model, image, roi_size=64, tta=False)
    with torch.no_grad():
        direct = tiny_model(torch.from_numpy(np.moveaxis(image, -1, 0)[None].astype(np.float32) / 255))
    torch.testing.assert_close(single[NP], direct[NP][0], atol=1e-5, rtol=1e-5)
