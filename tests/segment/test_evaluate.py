"""The metric table: the truth scores 1 everywhere, misses and merges cost what they should."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.segment import TYPE_FREE_METRICS, NucleiPrediction, binary_dice, centroids_of, score_predictions

from .conftest import NAMES, toy_sample


def as_prediction(inst: np.ndarray, types: np.ndarray) -> NucleiPrediction:
    from synthaug.conditions import instance_type_votes

    ids, classes = instance_type_votes(inst, types)
    lookup = np.zeros(int(inst.max()) + 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1)
    relabelled = lookup[inst]
    return NucleiPrediction(
        relabelled,
        types.astype(np.int32),
        {i + 1: int(c) for i, c in enumerate(classes)},
        centroids_of(relabelled),
    )


def test_the_truth_scores_one_on_every_metric(samples):
    table = score_predictions(samples, [as_prediction(s.inst, s.types) for s in samples], NAMES)
    assert set(table) == {*TYPE_FREE_METRICS, "mPQ", "accuracy_type", *(f"F1_{n}" for n in NAMES.values())}
    for name, value in table.items():
        assert value == pytest.approx(1.0, abs=1e-5), name


def test_dropping_half_the_nuclei_halves_recall_but_not_quality_of_the_rest():
    sample = toy_sample(2, size=128)
    ids = np.unique(sample.inst[sample.inst > 0])
    kept = np.isin(sample.inst, ids[::2]) * sample.inst
    table = score_predictions([sample], [as_prediction(kept, np.where(kept > 0, sample.types, 0))], NAMES)
    n_true, n_pred = len(ids), len(ids[::2])
    assert table["F1_detection"] == pytest.approx(2 * n_pred / (n_pred + n_true))
    assert table["PQ"] == pytest.approx(table["F1_detection"], abs=1e-5)  # every kept nucleus is exact
    assert table["accuracy_type"] == 1.0


def test_type_free_vocabulary_gives_the_type_free_metrics(samples):
    table = score_predictions(samples[:1], [as_prediction(samples[0].inst, samples[0].types)], {})
    assert set(table) == set(TYPE_FREE_METRICS)


def test_binary_dice_and_shape_checks(samples):
    a = np.zeros((4, 4), np.int32)
    b = a.copy()
    a[:2], b[1:3] = 1, 7
    assert binary_dice(a, b) == pytest.approx(0.5) and np.isnan(binary_dice(a * 0, b * 0))
    wrong = as_prediction(samples[0].inst[:32, :32].copy(), samples[0].types[:32, :32].copy())
    with pytest.raises(ValueError, match="differ in shape"):
        score_predictions(samples[:1], [wrong], NAMES)
    with pytest.raises(ValueError, match="one prediction per sample"):
        score_predictions(samples[:2], [wrong], NAMES)


def test_calibration_picks_the_best_threshold_and_the_saved_model_keeps_it(tiny_model, samples, tmp_path):
    import copy

    from synthaug.segment import MARKER_THRESHOLDS, calibrate_marker_threshold, load_segmenter

    model = copy.deepcopy(tiny_model)
    scores = calibrate_marker_threshold(model, samples[:2], progress=False)
    assert set(scores) == set(MARKER_THRESHOLDS)
    best = max(scores.values())
    assert scores[model.config.marker_threshold] == best
    assert model.config.marker_threshold == min(t for t, v in scores.items() if v == best)  # ties: lowest
    model.save_pretrained(tmp_path)
    assert load_segmenter(tmp_path).config.marker_threshold == model.config.marker_threshold
    with pytest.raises(ValueError, match="`thresholds` must be values in"):
        calibrate_marker_threshold(model, samples[:1], thresholds=[1.5])
    with pytest.raises(ValueError, match="`samples` is empty"):
        calibrate_marker_threshold(model, [])
