"""Which cached synthetic samples to draw: cache checks and per-sample draw weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from synthaug._validation import check_choice, check_int
from synthaug.data import Sample

COUNT_BY = ("instances", "pixels")
_CACHE_API = ("read", "type_pixel_counts", "type_instance_counts", "num_types", "height", "width")


def check_cache(
    cache: Any,
    name: str = "cache",
    *,
    num_types: int | None = None,
    type_names: Mapping[int, str] | None = None,
) -> int:
    """Check that ``cache`` is a usable, non-empty ``SyntheticCache``; returns its length.

    Raises:
        TypeError: ``cache`` lacks the ``SyntheticCache`` interface.
        ValueError: the cache holds no committed sample, its number of types differs from
            ``num_types`` (the real data's), or the class names it records differ from
            ``type_names`` (the real data's, e.g. ``reader.type_names``): type 3 must mean the same
            class in both.
    """
    missing = [attr for attr in _CACHE_API if not hasattr(cache, attr)]
    if missing or not hasattr(cache, "__len__"):
        raise TypeError(
            f"`{name}` must be a synthaug.sampling.SyntheticCache (open one with "
            f"`SyntheticCache.open(url)`), got {type(cache).__name__} without {missing or ['__len__']}."
        )
    length = len(cache)
    if length == 0:
        raise ValueError(
            f"`{name}` is empty (0 committed samples); fill it with sampled pairs first (`synthaug sample`) "
            "or point it at a finished cache."
        )
    if num_types is not None and int(cache.num_types) != int(num_types):
        raise ValueError(
            f"`{name}` holds {cache.num_types} nucleus types but the real data has {num_types}; "
            "sample a cache with the real dataset's type list (or remap the types) before mixing."
        )
    recorded = getattr(cache, "type_names", None)
    wanted = None if type_names is None else {int(k): str(v) for k, v in type_names.items()}
    if wanted and int(cache.num_types) != max(wanted):
        # Also for a cache that records no names: its labels must stay inside the real data's range.
        raise ValueError(
            f"`{name}` holds {cache.num_types} nucleus types but the real data's `type_names` go up to "
            f"{max(wanted)}; sample a cache with the real dataset's type list before mixing."
        )
    if wanted is not None and recorded is not None:
        if wanted != recorded:
            raise ValueError(
                f"`{name}` was sampled on masks with types {recorded} but the real data has {wanted}; "
                "sample a cache from this dataset's masks (the same id must mean the same class)."
            )
    return length


def check_types(types: Iterable[Any] | None, name: str, num_types: int) -> tuple[int, ...] | None:
    """Validate type ids against ``1..num_types``; ``None`` passes through."""
    if types is None:
        return None
    out = tuple(int(t) for t in types)
    if not out:
        raise ValueError(f"`{name}` is empty; pass None to draw every cached sample uniformly.")
    bad = [t for t in out if not 1 <= t <= num_types]
    if bad:
        raise ValueError(
            f"`{name}` has type ids {bad} outside 1..{num_types} (the cache's types; 0 is background)."
        )
    return out


def draw_probabilities(
    cache: Any,
    *,
    target_types: Iterable[int] | None = None,
    type_weights: Mapping[int, float] | None = None,
    count_by: str = "instances",
) -> np.ndarray:
    """Probability of drawing each cached sample, weighted towards the requested nucleus types.

    Sample ``i`` is drawn with probability proportional to ``sum_t w_t * counts[i, t]`` over the
    weighted types ``t``: the ``target_types`` (each ``w_t = type_weights.get(t, 1)``), or, with
    only ``type_weights``, every type (``w_t`` defaulting to 1). With neither, every sample is
    equally likely. Samples without any weighted nucleus are never drawn.

    Args:
        cache: a ``SyntheticCache`` (``type_instance_counts()``/``type_pixel_counts()`` give
            ``(N, num_types + 1)`` counts, column 0 the background).
        target_types: type ids (1-based) to over-represent.
        type_weights: type id -> non-negative weight.
        count_by: ``"instances"`` (nuclei per type, favours small rare cells) or ``"pixels"``.

    Returns:
        ``(N,)`` float64 probabilities summing to 1.

    Raises:
        ValueError: unknown ``count_by``, bad type ids or weights, or no cached sample holds any
            weighted type.
    """
    check_choice(count_by, "count_by", COUNT_BY)
    length = check_cache(cache)
    num_types = int(cache.num_types)
    w = _type_weights(num_types, target_types, type_weights)  # validates even when unused
    if target_types is None and not type_weights:
        return np.full(length, 1.0 / length)
    counts = cache.type_instance_counts() if count_by == "instances" else cache.type_pixel_counts()
    counts = np.asarray(counts, dtype=np.float64)[:length]
    return _weighted_by_types(counts, w, "cached sample", f" (by {count_by})")


def sample_draw_probabilities(
    samples: Sequence[Sample],
    num_types: int,
    *,
    target_types: Iterable[int] | None = None,
    type_weights: Mapping[int, float] | None = None,
    uniform_share: float = 0.0,
) -> np.ndarray:
    """Probability of drawing each real sample, weighted towards the requested nucleus types.

    The real-tile twin of :func:`draw_probabilities` (same ``target_types`` / ``type_weights``
    rules, counting each sample's nuclei per type from ``inst_types``), mixed with a uniform draw:
    ``uniform_share * 1/N + (1 - uniform_share) * weighted``. Over-sampling the tiles that hold a
    rare class is the naive answer to class imbalance; ``uniform_share > 0`` keeps every tile in the
    draws. Pass the result as ``train_segmenter(draw_weights=...)``.

    Raises:
        ValueError: bad type ids, weights or ``uniform_share``, or no sample holds a weighted type
            while ``uniform_share < 1``.
    """
    if not len(samples):
        raise ValueError("`samples` is empty; pass the training samples to weight.")
    check_int(num_types, "num_types", minimum=1, hint="the dataset's number of nucleus types")
    if isinstance(uniform_share, bool) or not isinstance(uniform_share, (int, float)):
        raise TypeError(f"`uniform_share` must be a number in [0, 1], got {uniform_share!r}.")
    if not 0 <= uniform_share <= 1:
        raise ValueError(f"`uniform_share` must lie in [0, 1], got {uniform_share!r}.")
    uniform = np.full(len(samples), 1.0 / len(samples))
    w = _type_weights(num_types, target_types, type_weights)
    if uniform_share == 1 or (target_types is None and not type_weights):
        return uniform
    counts = np.zeros((len(samples), num_types + 1))
    for i, sample in enumerate(samples):
        types = np.fromiter(sample.inst_types.values(), np.int64, len(sample.inst_types))
        if types.size and (types.min() < 0 or types.max() > num_types):
            raise ValueError(f"sample {sample.name!r} has type ids outside 0..{num_types} (`num_types`).")
        counts[i] = np.bincount(types, minlength=num_types + 1)
    weighted = _weighted_by_types(counts, w, "sample")
    return uniform_share * uniform + (1 - uniform_share) * weighted


def _type_weights(
    num_types: int, target_types: Iterable[int] | None, type_weights: Mapping[int, float] | None
) -> np.ndarray:
    """The per-type weight vector ``w`` (index 0 the background, always 0), validated."""
    targets = check_types(target_types, "target_types", num_types)
    if type_weights is not None and not isinstance(type_weights, Mapping):
        raise TypeError(f"`type_weights` must map type id -> weight, got {type(type_weights).__name__}.")
    weights_by_type = {int(k): float(v) for k, v in (type_weights or {}).items()}
    check_types(weights_by_type or None, "type_weights", num_types)
    if any(not np.isfinite(w) or w < 0 for w in weights_by_type.values()):
        raise ValueError(f"`type_weights` must be finite and non-negative, got {weights_by_type}.")
    types = targets if targets is not None else tuple(range(1, num_types + 1))
    w = np.zeros(num_types + 1)
    for t in types:
        w[t] = weights_by_type.get(t, 1.0)
    return w


def _weighted_by_types(counts: np.ndarray, w: np.ndarray, what: str, how: str = "") -> np.ndarray:
    """``counts @ w`` normalised: the one weighting rule of cached pairs and real samples."""
    score = counts @ w
    total = score.sum()
    if total <= 0:
        raise ValueError(
            f"no {what} contains nuclei of the weighted types {np.flatnonzero(w).tolist()}{how}; "
            "use data that holds them, or change `target_types` / `type_weights`."
        )
    return score / total
