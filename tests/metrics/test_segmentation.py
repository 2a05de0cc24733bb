"""Dice / AJI / PQ / bPQ / mPQ against hand-computed cases and a plain HoVer-Net-style reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from synthaug.metrics.segmentation import (
    aggregated_jaccard_index,
    conic_pq,
    dice_per_class,
    instance_classes,
    panoptic_quality,
)


def _reference_pq(true, pred, match_iou=0.5):
    """HoVer-Net's get_fast_pq written plainly: one mask per instance pair, then the same formulas."""
    true_ids = [i for i in np.unique(true) if i]
    pred_ids = [i for i in np.unique(pred) if i]
    iou = np.zeros((len(true_ids), len(pred_ids)))
    for a, t in enumerate(true_ids):
        for b, p in enumerate(pred_ids):
            inter = np.logical_and(true == t, pred == p).sum()
            iou[a, b] = inter / np.logical_or(true == t, pred == p).sum()
    paired = iou > match_iou
    tp = int(paired.sum())
    fp, fn = len(pred_ids) - tp, len(true_ids) - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn + 1e-6)
    sq = iou[paired].sum() / (tp + 1e-6)
    return dq, sq, dq * sq


def _reference_aji(true, pred):
    """HoVer-Net's get_fast_aji written plainly."""
    true_ids = [i for i in np.unique(true) if i]
    pred_ids = [i for i in np.unique(pred) if i]
    inter_total = union_total = 0
    used_pred = set()
    for t in true_ids:
        best, best_iou = None, 0.0
        for p in pred_ids:  # ascending labels: the first of equal IoUs wins, like np.argmax
            inter = np.logical_and(true == t, pred == p).sum()
            union = np.logical_or(true == t, pred == p).sum()
            if inter / union > best_iou:
                best, best_iou = p, inter / union
        if best is None:
            union_total += (true == t).sum()
        else:
            used_pred.add(best)
            inter_total += np.logical_and(true == t, pred == best).sum()
            union_total += np.logical_or(true == t, pred == best).sum()
    union_total += sum((pred == p).sum() for p in pred_ids if p not in used_pred)
    return inter_total / union_total


def _random_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = np.kron(rng.integers(0, 6, size=(4, 4)), np.ones((4, 4), np.int64)).astype(np.int32)
    pred = rng.permutation(10)[true].astype(np.int32)  # same regions under other labels
    noise = rng.random(true.shape) < 0.25
    pred[noise] = rng.integers(0, 10, size=int(noise.sum()))
    return true, pred


def _toy() -> np.ndarray:
    true = np.zeros((20, 20), np.int32)
    true[2:8, 2:8] = 1  # 36 px
    true[10:18, 10:18] = 2  # 64 px
    true[2:6, 12:18] = 3  # 24 px
    return true


def test_perfect_match_scores_one():
    true = _toy()
    pred = np.where(true > 0, true + 10, 0).astype(np.int32)  # labels need not agree
    pq = panoptic_quality(true, pred)
    assert (pq.tp, pq.fp, pq.fn) == (3, 0, 0)
    assert pq.pq == pytest.approx(1.0, abs=1e-5)
    assert aggregated_jaccard_index(true, pred) == 1.0


def test_missed_nucleus():
    true = _toy()
    pred = np.where(true == 3, 0, true).astype(np.int32)
    pq = panoptic_quality(true, pred)
    assert (pq.tp, pq.fp, pq.fn) == (2, 0, 1)
    assert pq.dq == pytest.approx(2 / 2.5, abs=1e-5)
    assert pq.sq == pytest.approx(1.0, abs=1e-5)
    # AJI: intersections 36 + 64 over unions 36 + 64 + the missed 24 px.
    assert aggregated_jaccard_index(true, pred) == pytest.approx(100 / 124)


def test_split_nucleus():
    true = _toy()
    pred = true.copy()
    pred[10:18, 14:18] = 4  # nucleus 2 (64 px) split into halves of 32 px: IoU 0.5 each, no match
    pq = panoptic_quality(true, pred)
    assert (pq.tp, pq.fp, pq.fn) == (2, 2, 1)
    assert pq.pq == pytest.approx(2 / (2 + 1 + 0.5), abs=1e-5)
    # AJI pairs nucleus 2 with the lower label of the tied halves (2); half 4 stays unpaired.
    assert aggregated_jaccard_index(true, pred) == pytest.approx((36 + 32 + 24) / (36 + 64 + 24 + 32))


def test_empty_maps():
    empty = np.zeros((8, 8), np.int32)
    assert panoptic_quality(empty, empty).pq == 0.0  # HoVer-Net's 1e-6 guard: nothing to find -> 0
    assert np.isnan(aggregated_jaccard_index(empty, empty))
    assert aggregated_jaccard_index(_toy(), np.zeros((20, 20), np.int32)) == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_pq_and_aji_match_plain_reference(seed):
    true, pred = _random_pair(seed)
    pq = panoptic_quality(true, pred)
    np.testing.assert_allclose((pq.dq, pq.sq, pq.pq), _reference_pq(true, pred), atol=1e-9)
    if true.any() or pred.any():
        assert aggregated_jaccard_index(true, pred) == pytest.approx(_reference_aji(true, pred))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_hungarian_matching_below_half_is_unique(seed):
    true, pred = _random_pair(seed)
    low = panoptic_quality(true, pred, match_iou=0.3)
    high = panoptic_quality(true, pred, match_iou=0.5)
    assert low.tp >= high.tp  # a looser threshold never loses matches
    assert low.tp <= min(len(np.unique(true[true > 0])), len(np.unique(pred[pred > 0])))
    # At threshold 0 the matched IoU sum is the optimum of the assignment over the full IoU matrix
    # (HoVer-Net's Munkres branch), whichever of several optimal pairings is picked.
    true_ids, pred_ids = np.unique(true[true > 0]), np.unique(pred[pred > 0])
    iou = np.array(
        [
            [np.sum((true == t) & (pred == p)) / np.sum((true == t) | (pred == p)) for p in pred_ids]
            for t in true_ids
        ]
    ).reshape(len(true_ids), len(pred_ids))
    rows, cols = linear_sum_assignment(-iou)
    assert panoptic_quality(true, pred, match_iou=0.0).iou_sum == pytest.approx(iou[rows, cols].sum())


def test_dice_per_class_hand_computed():
    true = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = np.array([[0, 1, 2, 2], [1, 1, 2, 2]])
    dice = dice_per_class(true, pred, num_classes=4)
    # class 1: |T|=3, |P|=3, overlap 2 -> 4/6; class 2: |T|=3, |P|=4, overlap 3 -> 6/7; class 3 absent.
    np.testing.assert_allclose(dice[:3], [2 / 3, 4 / 6, 6 / 7])
    assert np.isnan(dice[3])
    # Pooled over images: the same two images stacked give the same Dice.
    np.testing.assert_allclose(dice_per_class([true, true], np.stack([pred, pred]), num_classes=4), dice)


def test_instance_classes_majority_vote():
    inst = np.array([[1, 1, 1, 0], [2, 2, 0, 0]])
    types = np.array([[3, 3, 1, 0], [0, 0, 0, 2]])
    ids, classes = instance_classes(inst, types)
    assert ids.tolist() == [1, 2] and classes.tolist() == [3, 0]


def test_conic_bpq_and_mpq():
    true = _toy()
    true_types = np.select([true == 1, true == 2, true == 3], [1, 2, 2], 0)
    pred = true.copy()
    pred_types = np.select([true == 1, true == 2, true == 3], [1, 2, 1], 0)  # nucleus 3 misclassified
    out = conic_pq([true, true], [true_types] * 2, [pred, pred], [pred_types] * 2, num_types=2)
    assert out["bPQ"] == pytest.approx(1.0, abs=1e-5)  # classes do not matter to binary PQ
    # class 1: tp 2 (nucleus 1 x2 images), fp 2 (nucleus 3 predicted as 1); class 2: tp 2, fn 2.
    assert out["per_class"][1]["tp"] == 2 and out["per_class"][1]["fp"] == 2
    assert out["per_class"][2]["tp"] == 2 and out["per_class"][2]["fn"] == 2
    assert out["mPQ"] == pytest.approx(2 / 3, abs=1e-5)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="`true`"):
        panoptic_quality(np.zeros((4, 4), np.int32), np.zeros((5, 4), np.int32))
    with pytest.raises(TypeError, match="`pred`"):
        panoptic_quality(np.zeros((4, 4), np.int32), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="`match_iou`"):
        panoptic_quality(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32), match_iou=1.5)
    with pytest.raises(ValueError, match="`num_classes`"):
        dice_per_class(np.zeros((2, 2), np.int32), np.full((2, 2), 3, np.int32), num_classes=3)
    with pytest.raises(ValueError, match="counts"):
        conic_pq([_toy()], [_toy()], [], [], num_types=2)
