"""HoVer-Net's centroid-pairing detection and per-type F1 on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.metrics.detection import detection_f1, pair_centroids


def test_pairing_is_one_to_one_optimal_and_respects_the_radius():
    # Greedy nearest-first would pair true 1 with pred 0 (distance 4) and leave true 0 at 16 px;
    # the optimal assignment pairs 0-0 (6) and 1-1 (6).
    true = np.array([[0.0, 0.0], [0.0, 10.0]])
    pred = np.array([[0.0, 6.0], [0.0, 16.0]])
    pairs, lone_true, lone_pred = pair_centroids(true, pred, radius=12)
    assert pairs.tolist() == [[0, 0], [1, 1]] and not len(lone_true) and not len(lone_pred)
    # exactly at the radius pairs (HoVer-Net keeps cost <= radius); beyond it does not
    assert len(pair_centroids([[0, 0]], [[0, 12]], radius=12)[0]) == 1
    pairs, lone_true, lone_pred = pair_centroids([[0, 0]], [[0, 12.5]], radius=12)
    assert not len(pairs) and lone_true.tolist() == [0] and lone_pred.tolist() == [0]


def test_detection_and_type_f1_match_the_hand_computed_hovernet_formulas():
    # pairs: (t type 1, p type 1) and (t type 2, p type 1); one lone true (type 1), one lone pred (type 2)
    true_c = [np.array([[0, 0], [10, 10], [50, 50]], float)]
    pred_c = [np.array([[1, 1], [11, 10], [100, 100]], float)]
    result = detection_f1(true_c, [np.array([1, 2, 1])], pred_c, [np.array([1, 1, 2])], num_types=2)
    assert result["F1_detection"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert result["accuracy_type"] == pytest.approx(0.5)
    # type 1: tp 1, fp 1 (true 2 called 1), fn_d 1 -> 2*1 / (2*1 + 2*1 + 0 + 1)
    assert result["F1_type"][1] == pytest.approx(2 / 5)
    # type 2: fn 1 (true 2 called 1), fp_d 1 (lone pred of type 2) -> 0 / (2 + 1)
    assert result["F1_type"][2] == 0.0
    assert result["counts"] == {"paired": 2, "unpaired_pred": 1, "unpaired_true": 1}


def test_counts_pool_over_images_and_a_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    centroids = [rng.uniform(0, 200, (n, 2)) for n in (5, 0, 9)]
    types = [rng.integers(1, 4, len(c)) for c in centroids]
    perfect = detection_f1(centroids, types, centroids, types, num_types=3)
    assert perfect["F1_detection"] == 1.0 and perfect["accuracy_type"] == 1.0
    assert all(v == 1.0 for v in perfect["F1_type"].values())
    # an image predicted empty adds its nuclei as misses to the pooled count
    half = detection_f1(
        centroids,
        types,
        [centroids[0], centroids[1], np.zeros((0, 2))],
        [types[0], types[1], np.zeros(0, int)],
        num_types=3,
    )
    assert half["F1_detection"] == pytest.approx(2 * 5 / (2 * 5 + 9))


def test_type_free_and_absent_types():
    out = detection_f1([np.zeros((0, 2))], [np.zeros(0)], [np.zeros((0, 2))], [np.zeros(0)], num_types=1)
    assert np.isnan(out["F1_detection"]) and np.isnan(out["F1_type"][1])
    assert detection_f1([[[0, 0]]], [[1]], [[[0, 1]]], [[1]], num_types=0)["F1_type"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radius": 0}, "`radius` must be a positive number"),
        ({"num_types": -1}, "`num_types` must be an integer >= 0"),
        ({"pred_types": [np.array([1, 1])]}, "every centroid needs one type"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    args = {
        "true_centroids": [[[0, 0]]],
        "true_types": [[1]],
        "pred_centroids": [[[0, 1]]],
        "pred_types": [[1]],
        "num_types": 1,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        detection_f1(**args)


def test_list_lengths_must_agree():
    with pytest.raises(ValueError, match="one entry per image"):
        detection_f1([[[0, 0]]], [[1]], [], [], num_types=1)
