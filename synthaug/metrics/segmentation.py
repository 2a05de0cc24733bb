"""Segmentation metrics for nuclei: Dice per class, AJI, PQ (DQ, SQ), and CoNIC's bPQ / mPQ.

The instance metrics follow HoVer-Net's reference definitions (``metrics/stats_utils.py``:
``get_fast_aji``, ``get_fast_pq``) and CoNIC's aggregation (``get_multi_pq_info`` + ``compute_stats``),
including their ``1e-6`` guards, so numbers are comparable with published tables. They are
vectorised: all pairwise intersections come from one ``np.unique`` over the pixels where both label
maps are foreground (a sparse contingency table), never from per-instance passes over the image.

Conventions: ``0`` is background; instance labels need not be contiguous; class maps hold
``0..num_types``. An instance's class is the majority non-background class under it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from synthaug._validation import check_instance_mask, check_int
from synthaug.conditions import instance_type_votes

_EPS = 1.0e-6  # HoVer-Net / CoNIC's guard in DQ and SQ denominators


@dataclass(frozen=True)
class PQResult:
    """Panoptic quality and the counts it is made of.

    Attributes:
        dq: detection quality, ``tp / (tp + fp/2 + fn/2)`` (an F1 score at IoU > ``match_iou``).
        sq: segmentation quality, mean IoU of the matched pairs.
        pq: ``dq * sq``.
        tp, fp, fn: matched, unmatched predicted and unmatched true instances.
        iou_sum: summed IoU of the matched pairs (what CoNIC accumulates across images).
    """

    dq: float
    sq: float
    pq: float
    tp: int
    fp: int
    fn: int
    iou_sum: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int, iou_sum: float) -> PQResult:
        """PQ from accumulated counts, with HoVer-Net's ``1e-6`` guards (empty vs empty gives 0)."""
        dq = tp / (tp + 0.5 * fp + 0.5 * fn + _EPS)
        sq = iou_sum / (tp + _EPS)
        return cls(float(dq), float(sq), float(dq * sq), int(tp), int(fp), int(fn), float(iou_sum))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class _Overlaps:
    """Sparse contingency of two label maps: instance ids, areas and the overlapping pairs."""

    true_ids: np.ndarray  # (Nt,) sorted labels > 0
    pred_ids: np.ndarray  # (Np,)
    true_area: np.ndarray  # (Nt,)
    pred_area: np.ndarray  # (Np,)
    pair_true: np.ndarray  # (P,) index into true_ids
    pair_pred: np.ndarray  # (P,) index into pred_ids
    inter: np.ndarray  # (P,) intersection in pixels

    @property
    def union(self) -> np.ndarray:
        return self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


def _overlaps(true: np.ndarray, pred: np.ndarray) -> _Overlaps:
    true_ids, true_area = np.unique(true[true > 0], return_counts=True)
    pred_ids, pred_area = np.unique(pred[pred > 0], return_counts=True)
    both = (true > 0) & (pred > 0)
    stride = np.int64(pred.max()) + 1 if pred.size else np.int64(1)
    keys, inter = np.unique(
        true[both].astype(np.int64) * stride + pred[both].astype(np.int64), return_counts=True
    )
    return _Overlaps(
        true_ids,
        pred_ids,
        true_area.astype(np.int64),
        pred_area.astype(np.int64),
        np.searchsorted(true_ids, keys // stride),
        np.searchsorted(pred_ids, keys % stride),
        inter.astype(np.int64),
    )


def _check_pair(true: np.ndarray, pred: np.ndarray, names: tuple[str, str] = ("true", "pred")):
    true = check_instance_mask(true, names[0])
    pred = check_instance_mask(pred, names[1])
    if true.shape != pred.shape:
        raise ValueError(f"`{names[0]}` {true.shape} and `{names[1]}` {pred.shape} must have the same shape.")
    return true, pred


def _check_match_iou(match_iou: float) -> float:
    if isinstance(match_iou, bool) or not isinstance(match_iou, (int, float)) or not 0 <= match_iou < 1:
        raise ValueError(f"`match_iou` must be a number in [0, 1), got {match_iou!r}; PQ uses 0.5.")
    return float(match_iou)


def _match(ov: _Overlaps, keep: np.ndarray, match_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched pairs (indices into ``ov.pair_*``'s selection ``keep``) and their IoUs."""
    iou = ov.iou[keep]
    if match_iou >= 0.5:
        # IoU > 0.5 makes every match unique (two instances cannot both cover > half of a third).
        hit = iou > match_iou
        return np.flatnonzero(keep)[hit], iou[hit]
    # Below 0.5 matches can conflict: maximal unique pairing by Hungarian assignment, as HoVer-Net.
    rows, row_idx = np.unique(ov.pair_true[keep], return_inverse=True)
    cols, col_idx = np.unique(ov.pair_pred[keep], return_inverse=True)
    dense = np.zeros((len(rows), len(cols)))
    dense[row_idx, col_idx] = iou
    r, c = linear_sum_assignment(-dense)
    chosen = dense[r, c] > match_iou
    pair_index = np.full(dense.shape, -1, np.int64)
    pair_index[row_idx, col_idx] = np.arange(len(row_idx))
    return np.flatnonzero(keep)[pair_index[r[chosen], c[chosen]]], dense[r, c][chosen]


def panoptic_quality(true: np.ndarray, pred: np.ndarray, *, match_iou: float = 0.5) -> PQResult:
    """Panoptic quality of one instance map against the ground truth (HoVer-Net ``get_fast_pq``).

    A predicted and a true nucleus match when their IoU exceeds ``match_iou`` (unique for 0.5 and
    above; Hungarian matching below, as HoVer-Net does).

    Args:
        true: ``(H, W)`` integer ground-truth instance map, 0 = background.
        pred: ``(H, W)`` integer predicted instance map.
        match_iou: IoU threshold for a match, in ``[0, 1)``; 0.5 is the standard.

    Returns:
        :class:`PQResult` with ``dq``, ``sq``, ``pq`` and the counts.

    Raises:
        TypeError: if a map is not an integer array.
        ValueError: if shapes differ or ``match_iou`` is outside ``[0, 1)``.
    """
    true, pred = _check_pair(true, pred)
    match_iou = _check_match_iou(match_iou)
    ov = _overlaps(true, pred)
    _, paired_iou = _match(ov, np.ones(len(ov.inter), bool), match_iou)
    tp = len(paired_iou)
    return PQResult.from_counts(tp, len(ov.pred_ids) - tp, len(ov.true_ids) - tp, float(paired_iou.sum()))


def aggregated_jaccard_index(true: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017) as HoVer-Net's ``get_fast_aji`` computes it.

    Each true nucleus is paired with the prediction of highest IoU (lowest label on ties); the
    paired intersections over the paired unions plus the areas of every unpaired true and
    predicted nucleus. A prediction paired with several true nuclei counts in each union.

    Args:
        true: ``(H, W)`` integer ground-truth instance map.
        pred: ``(H, W)`` integer predicted instance map.

    Returns:
        AJI in ``[0, 1]``; ``nan`` when both maps are empty (undefined).

    Raises:
        TypeError: if a map is not an integer array.
        ValueError: if the shapes differ.
    """
    true, pred = _check_pair(true, pred)
    ov = _overlaps(true, pred)
    if not len(ov.true_ids) and not len(ov.pred_ids):
        return float("nan")
    # Best prediction per true nucleus: sort pairs by true, then IoU descending, then pred label.
    order = np.lexsort((ov.pair_pred, -ov.iou, ov.pair_true))
    first = order[np.r_[True, np.diff(ov.pair_true[order]) != 0]] if len(order) else order
    inter = ov.inter[first].sum()
    union = ov.union[first].sum()
    unpaired_true = np.ones(len(ov.true_ids), bool)
    unpaired_true[ov.pair_true[first]] = False
    unpaired_pred = np.ones(len(ov.pred_ids), bool)
    unpaired_pred[ov.pair_pred[first]] = False
    union += ov.true_area[unpaired_true].sum() + ov.pred_area[unpaired_pred].sum()
    return float(inter / union)


def instance_classes(inst: np.ndarray, type_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class of every instance: the majority non-background class under it (0 if none).

    Args:
        inst: ``(H, W)`` integer instance map.
        type_map: ``(H, W)`` integer class map, 0 = background.

    Returns:
        ``(ids, classes)``: sorted instance labels and their classes, both ``(K,)`` int64.

    Raises:
        TypeError, ValueError: on non-integer maps or mismatched shapes.
    """
    inst, type_map = _check_pair(inst, type_map, ("inst", "type_map"))
    return instance_type_votes(inst, type_map)


def _as_list(maps: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            return [maps]
        if maps.ndim == 3:
            return list(maps)
        raise ValueError(f"`{name}` must be (H, W), (N, H, W) or a list of (H, W) maps, not {maps.shape}.")
    if isinstance(maps, Sequence) and not isinstance(maps, str):
        return list(maps)
    raise TypeError(f"`{name}` must be a numpy array or a list of arrays, got {type(maps).__name__}.")


def _check_lists(**named: np.ndarray | Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    lists = [_as_list(v, k) for k, v in named.items()]
    lengths = {k: len(v) for k, v in zip(named, lists)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"Every input needs one map per image; got counts {lengths}.")
    if not next(iter(lengths.values())):
        raise ValueError(f"Inputs {list(named)} are empty; pass at least one image.")
    return lists


def dice_per_class(
    true: np.ndarray | Sequence[np.ndarray],
    pred: np.ndarray | Sequence[np.ndarray],
    *,
    num_classes: int,
) -> np.ndarray:
    """Dice of every class of a semantic (type) map, pooled over all pixels of all images.

    ``2 |P_k ∩ T_k| / (|P_k| + |T_k|)`` from one confusion matrix (``np.bincount``), so small and
    empty images weigh by their pixels rather than one vote each.

    Args:
        true: ``(H, W)`` / ``(N, H, W)`` / list of ground-truth class maps with values ``0..num_classes-1``.
        pred: predicted class maps, same shapes.
        num_classes: number of classes including background (class 0).

    Returns:
        ``(num_classes,)`` float64 Dice per class (index 0 = background); ``nan`` where a class is
        absent from both ``true`` and ``pred``.

    Raises:
        TypeError, ValueError: on non-integer maps, mismatched shapes or out-of-range classes.
    """
    check_int(num_classes, "num_classes", minimum=2, hint="background + types")
    trues, preds = _check_lists(true=true, pred=pred)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for t, p in zip(trues, preds):
        t, p = _check_pair(t, p)
        if t.size and max(t.max(), p.max()) >= num_classes:
            raise ValueError(
                f"class maps hold labels up to {max(t.max(), p.max())} but `num_classes` is {num_classes}; "
                "pass the number of classes including background."
            )
        flat = t.astype(np.int64).ravel() * num_classes + p.ravel()
        confusion += np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
    overlap = np.diag(confusion).astype(np.float64)
    total = confusion.sum(axis=0) + confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * overlap / total, np.nan)


def conic_pq(
    true_inst: np.ndarray | Sequence[np.ndarray],
    true_types: np.ndarray | Sequence[np.ndarray],
    pred_inst: np.ndarray | Sequence[np.ndarray],
    pred_types: np.ndarray | Sequence[np.ndarray],
    *,
    num_types: int,
    match_iou: float = 0.5,
) -> dict[str, object]:
    """bPQ and mPQ as the CoNIC challenge defines them.

    - **bPQ**: binary PQ (all nuclei one class) per image, averaged over images.
    - **mPQ**: for each class, TP/FP/FN and matched-IoU sums are accumulated over *all* images,
      PQ is computed from the totals, then averaged over the ``num_types`` classes (a class absent
      from every image, true and predicted, scores 0 as in CoNIC).

    An instance's class is the majority class of its type map (see :func:`instance_classes`).

    Args:
        true_inst, pred_inst: instance maps, ``(H, W)``, ``(N, H, W)`` or lists.
        true_types, pred_types: class maps (0 = background, ``1..num_types``), same shapes.
        num_types: number of nucleus classes, background excluded.
        match_iou: IoU threshold for a match (0.5 standard).

    Returns:
        ``{"bPQ": float, "mPQ": float, "per_class": {type_id: PQResult.to_dict()}, "per_image_pq": [..]}``.

    Raises:
        TypeError, ValueError: on malformed maps, mismatched counts or shapes, or bad options.
    """
    check_int(num_types, "num_types", minimum=1, hint="background excluded")
    match_iou = _check_match_iou(match_iou)
    lists = _check_lists(
        true_inst=true_inst, true_types=true_types, pred_inst=pred_inst, pred_types=pred_types
    )
    totals = np.zeros((num_types, 4))  # tp, fp, fn, iou_sum per class
    per_image = []
    for ti, tt, pi, pt in zip(*lists):
        ti, pi = _check_pair(ti, pi, ("true_inst", "pred_inst"))
        ov = _overlaps(ti, pi)
        everything = np.ones(len(ov.inter), bool)
        _, paired_iou = _match(ov, everything, match_iou)
        tp = len(paired_iou)
        per_image.append(
            PQResult.from_counts(tp, len(ov.pred_ids) - tp, len(ov.true_ids) - tp, paired_iou.sum()).pq
        )
        # Classes restrict which pairs may match; areas and IoUs are the same as in the binary case.
        # ``instance_classes`` lists the same sorted labels as ``_overlaps``, so the arrays align.
        true_cls = instance_classes(ti, tt)[1]
        pred_cls = instance_classes(pi, pt)[1]
        for k in range(1, num_types + 1):
            same = (true_cls[ov.pair_true] == k) & (pred_cls[ov.pair_pred] == k)
            _, iou_k = _match(ov, same, match_iou)
            tp_k = len(iou_k)
            totals[k - 1] += (tp_k, (pred_cls == k).sum() - tp_k, (true_cls == k).sum() - tp_k, iou_k.sum())
    per_class = {k + 1: PQResult.from_counts(*totals[k]) for k in range(num_types)}
    return {
        "bPQ": float(np.mean(per_image)),
        "mPQ": float(np.mean([r.pq for r in per_class.values()])),
        "per_class": {k: r.to_dict() for k, r in per_class.items()},
        "per_image_pq": [float(v) for v in per_image],
    }
