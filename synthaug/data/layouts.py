"""Procedural nuclei layouts: instance + type maps with per-type morphology and arrangement.

``generate_layout`` draws candidate nuclei as ellipses, arranged the way each CoNSeP type tends to
appear in colorectal H&E, then rasterises them in priority order with a collision check:

- epithelial (3): tall columnar nuclei in palisades along gland-like closed curves, long axis
  perpendicular to the gland boundary, side by side;
- spindle (4): elongated nuclei in bundles that share a slowly bending local orientation;
- inflammatory (2): small round nuclei, dense clusters plus a few scattered ones;
- other (1): scattered medium ellipses.

Sizes follow CoNSeP at 40x (median semi-axes on its training patches: 13x7.5 px epithelial,
10x5.3 spindle, 8.7x6.5 inflammatory, 6x4 other), with epithelial and spindle nuclei drawn a
little more elongated so their arrangements read clearly. Type shares are shares of
*instances*; after placement, surplus nuclei of over-represented types are dropped so the shares
hold even when a crowded tile could not fit every nucleus.

The result is a :class:`Layout` (masks only). ``synthaug.data.toy.render_toy_tile`` paints a toy
H&E image for it, and :meth:`Layout.to_sample` turns both into a :class:`~synthaug.data.Sample`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from skimage.measure import label as label_components

from synthaug._validation import check_instance_mask, check_int, check_probability
from synthaug.conditions import type_map_from_instances
from synthaug.data.record import Sample
from synthaug.data.validate import compact_instances
from synthaug.data.vocabulary import CONSEP_TYPES

# Semi-axes (major, minor) in px at 40x, size=1; see the module docstring for CoNSeP's values.
_SEMI_AXES = {1: (7.5, 4.5), 2: (8.0, 6.5), 3: (14.0, 6.5), 4: (12.0, 4.2)}
# Placement priority: structured arrangements claim space first, fillers last.
_PLACEMENT_ORDER = (3, 4, 2, 1)
DEFAULT_TYPE_SHARES: dict[int, float] = {1: 0.05, 2: 0.25, 3: 0.4, 4: 0.3}
_MIN_PIXELS = 8  # a nucleus cut by the tile border keeps at least this many pixels


@dataclass(eq=False)  # array fields: identity equality; compare `inst`/`types` explicitly
class Layout:
    """A nuclei layout: instance map, type map and per-instance types, without an image.

    Attributes:
        inst: ``(H, W)`` int32, 0 = background, 1..N nuclei.
        types: ``(H, W)`` uint8, 0 = background, else the CoNSeP type id of the nucleus.
        inst_types: instance id -> type id for every id in ``inst``.
        meta: free-text metadata (``tissue``, ``source``, ...), carried into a ``Sample``.
        name: a name for reports and caches.
    """

    inst: np.ndarray
    types: np.ndarray
    inst_types: dict[int, int]
    meta: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.inst = check_instance_mask(self.inst, "inst").astype(np.int32, copy=False)
        if not isinstance(self.types, np.ndarray) or self.types.shape != self.inst.shape:
            raise ValueError(
                f"`types` must be an array with the shape of `inst` {self.inst.shape}, "
                f"got {getattr(self.types, 'shape', type(self.types).__name__)}."
            )
        self.types = self.types.astype(np.uint8, copy=False)
        self.inst_types = {int(k): int(v) for k, v in self.inst_types.items()}
        self.meta = {str(k): str(v) for k, v in self.meta.items()}

    def __repr__(self) -> str:  # arrays would flood logs and test reports
        height, width = self.shape
        return f"{type(self).__name__}({height}x{width}, {self.num_instances} nuclei, name={self.name!r})"

    @property
    def shape(self) -> tuple[int, int]:
        return self.inst.shape[0], self.inst.shape[1]

    @property
    def num_instances(self) -> int:
        return len(self.inst_types)

    def validate(self) -> Layout:
        """Check the invariants every producer guarantees; returns ``self``.

        Raises:
            ValueError: when ids are not exactly 1..N, ``inst_types`` does not list exactly those
                ids, or ``types`` differs from ``inst_types`` painted onto ``inst``.
        """
        ids = np.unique(self.inst)
        ids = ids[ids > 0]
        if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
            raise ValueError(
                f"`inst` ids must be compact 1..N; got {len(ids)} ids up to {ids.max(initial=0)}. "
                "Renumber with `sanitize_instances`."
            )
        if set(self.inst_types) != set(ids.tolist()):
            raise ValueError("`inst_types` must have exactly one entry per instance id in `inst`.")
        if not np.array_equal(self.types, type_map_from_instances(self.inst, self.inst_types)):
            raise ValueError("`types` must equal `inst_types` painted onto `inst`.")
        return self

    def to_sample(self, image: np.ndarray, *, name: str | None = None) -> Sample:
        """Pair the layout with an ``(H, W, 3)`` uint8 image, e.g. from ``render_toy_tile``."""
        return Sample(
            image=image,
            inst=self.inst,
            types=self.types,
            inst_types=dict(self.inst_types),
            meta=dict(self.meta),
            name=self.name if name is None else name,
        )

    @classmethod
    def from_sample(cls, sample: Sample) -> Layout:
        """The masks of a ``Sample`` (copied, so edits never touch the sample)."""
        return cls(
            sample.inst.copy(), sample.types.copy(), dict(sample.inst_types), dict(sample.meta), sample.name
        )


def sanitize_instances(
    inst: np.ndarray, inst_types: Mapping[int, int], *, min_area: int = 8
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Make an edited instance map valid again: one connected piece per id, ids compact.

    Warping or cropping can split a nucleus or leave slivers. Each id keeps its largest
    8-connected component (so thin diagonal nuclei stay whole); pieces smaller than ``min_area``
    px are dropped; ids are renumbered 1..N in order of the old ids.

    Args:
        inst: ``(H, W)`` integer instance map.
        inst_types: old id -> type id; instances without an entry are dropped.
        min_area: smallest nucleus kept, in pixels.

    Returns:
        ``(inst int32, types uint8, inst_types)`` satisfying :meth:`Layout.validate`.
    """
    inst = check_instance_mask(inst, "inst")
    components = label_components(inst, background=0, connectivity=2)
    owner = np.zeros(components.max() + 1, dtype=np.int64)
    owner[components.ravel()] = inst.ravel()
    area = np.bincount(components.ravel(), minlength=len(owner))
    # Largest component per owner id: sort by (owner, area) and keep the last of each owner run.
    order = np.lexsort((area, owner))
    last_of_run = np.r_[owner[order][1:] != owner[order][:-1], True]
    keep = np.zeros(len(owner), dtype=bool)
    keep[order[last_of_run]] = True
    typed = np.array([int(inst_types.get(int(o), 0)) > 0 for o in owner])
    keep &= (area >= min_area) & (owner > 0) & typed
    cleaned, new_types = compact_instances(np.where(keep[components], inst, 0), inst_types)
    return cleaned, type_map_from_instances(cleaned, new_types), new_types


def generate_layout(
    height: int,
    width: int,
    *,
    type_shares: Mapping[int | str, float] | None = None,
    density: float = 0.2,
    size: float = 1.0,
    gap: int = 1,
    seed: int | np.random.Generator | None = None,
    name: str = "",
) -> Layout:
    """Draw a random nuclei layout with CoNSeP-like morphology per type.

    Args:
        height, width: tile size in pixels (at least 16 each).
        type_shares: share of *instances* per type, by id or name (``{"epithelial": 0.6,
            "spindle": 0.4}``); normalised to sum 1. Defaults to ``DEFAULT_TYPE_SHARES``.
        density: target fraction of the tile covered by nuclei, in [0, 0.6] (CoNSeP: ~0.17).
            Crowded arrangements may reach less; shares take precedence over density.
        size: scale of every nucleus (1.0 = 40x; 0.5 = 20x).
        gap: minimum free pixels between two nuclei, diagonals included (0 lets nuclei touch).
        seed: an int, a ``np.random.Generator`` or ``None``; the same int gives the same layout.
        name: stored on the returned layout.

    Returns:
        A valid :class:`Layout` (``validate()`` holds): compact ids, no overlaps.

    Raises:
        ValueError, TypeError: for invalid arguments (the message names the argument).
    """
    for arg, value in (("height", height), ("width", width)):
        check_int(value, arg, minimum=16)
    if check_probability(density, "density") > 0.6:
        raise ValueError(f"`density` must be at most 0.6 (nuclei cannot tile the plane), got {density}.")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0.25 <= size <= 4:
        raise ValueError(f"`size` must be a number in [0.25, 4] (1.0 = 40x), got {size!r}.")
    check_int(gap, "gap", minimum=0, maximum=8)
    shares = _normalise_shares(DEFAULT_TYPE_SHARES if type_shares is None else type_shares)
    rng = np.random.default_rng(seed)

    quota = _type_quota(shares, density * height * width, size, rng)
    ellipses, cand_types = _draw_candidates(rng, height, width, quota, size, gap)
    inst = np.zeros((height, width), dtype=np.int32)
    remaining = quota.copy()
    placed_types = cand_types[_place_ellipses_kernel(ellipses, cand_types, remaining, inst, gap, _MIN_PIXELS)]
    for _ in range(3):  # top up types that lost candidates to collisions, in the space left
        if not remaining.any():
            break
        ellipses, cand_types = _draw_candidates(rng, height, width, remaining, size, gap)
        placed = _place_ellipses_kernel(ellipses, cand_types, remaining, inst, gap, _MIN_PIXELS)
        placed_types = np.concatenate([placed_types, cand_types[placed]])
    inst = _enforce_shares(inst, placed_types, quota, rng)
    # Ellipses are whole pieces, so renumbering is all that is left (no sanitize_instances needed).
    inst, inst_types = compact_instances(inst, dict(enumerate(placed_types.tolist(), start=1)))
    types = type_map_from_instances(inst, inst_types)
    return Layout(inst, types, inst_types, {"source": "generated layout"}, name)


def _normalise_shares(type_shares: Mapping[int | str, float]) -> np.ndarray:
    if not isinstance(type_shares, Mapping) or not type_shares:
        raise TypeError(f"`type_shares` must be a non-empty mapping type -> share, got {type_shares!r}.")
    shares = np.zeros(CONSEP_TYPES.num_types + 1)
    for key, value in type_shares.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"`type_shares[{key!r}]` must be a non-negative number, got {value!r}.")
        shares[CONSEP_TYPES.resolve(key, "type_shares key")] += value
    if shares.sum() <= 0:
        raise ValueError("`type_shares` must have at least one positive share.")
    return shares / shares.sum()


def _type_quota(shares: np.ndarray, nuclear_area: float, size: float, rng) -> np.ndarray:
    """Nuclei per type: a Poisson total whose expected area is ``nuclear_area``, split by shares.

    The split uses largest remainders, so each count is within one of ``share * total``.
    """
    mean_area = np.array([0.0] + [np.pi * a * b * size**2 for a, b in _SEMI_AXES.values()])
    total = rng.poisson(nuclear_area / float((shares * mean_area).sum()))
    exact = shares * total
    quota = np.floor(exact).astype(np.int64)
    remainder = int(total) - int(quota.sum())
    quota[np.argsort(-(exact - quota))[: max(remainder, 0)]] += 1
    return quota


def _enforce_shares(inst: np.ndarray, placed_types: np.ndarray, quota: np.ndarray, rng) -> np.ndarray:
    """Drop random surplus nuclei so the placed counts keep the proportions of ``quota``.

    A type that found no room at all (e.g. a gland larger than a tiny tile) is left out rather
    than emptying the whole tile.
    """
    counts = np.bincount(placed_types, minlength=len(quota))
    wanted = quota > 0
    if (counts[wanted] == 0).any() and counts.any():
        wanted &= counts > 0
    if not wanted.any():
        return inst
    scale = min(1.0, float(np.min(counts[wanted] / quota[wanted])))
    target = np.minimum(np.round(quota * scale), counts).astype(int)
    drop = np.zeros(len(placed_types) + 1, dtype=bool)
    for t in np.flatnonzero(counts > target):
        ids = np.flatnonzero(placed_types == t) + 1
        drop[rng.choice(ids, size=int(counts[t] - target[t]), replace=False)] = True
    return np.where(drop[inst], 0, inst)


def _jittered_axes(rng, t: int, n: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = _SEMI_AXES[t]
    scale = size * rng.lognormal(0.0, 0.12, n)
    stretch = rng.lognormal(0.0, 0.1, n)  # aspect variation, area-preserving
    return a * scale * stretch, b * scale / stretch


def _draw_candidates(rng, height: int, width: int, quota: np.ndarray, size: float, gap: int):
    """Candidate ellipses ``(N, 5)`` = (cy, cx, a, b, theta) and their types, in placement order."""
    drawers = {3: _gland_candidates, 4: _bundle_candidates, 2: _cluster_candidates, 1: _scatter_candidates}
    blocks, block_types = [], []
    for t in _PLACEMENT_ORDER:
        if quota[t] == 0:
            continue
        # Collisions reject many candidates in crowded tiles: draw a generous surplus.
        cand = drawers[t](rng, height, width, 4 * int(quota[t]) + 8, size, gap)
        blocks.append(cand)
        block_types.append(np.full(len(cand), t, dtype=np.int64))
    if not blocks:
        return np.zeros((0, 5)), np.zeros(0, dtype=np.int64)
    return np.concatenate(blocks), np.concatenate(block_types)


def _inside(cy, cx, height, width):
    return (cy >= 0) & (cy < height) & (cx >= 0) & (cx < width)


def _gland_candidates(rng, height, width, n, size, gap):
    """Palisades: nuclei side by side on closed wobbly rings, long axis along the ring normal."""
    out, count = [], 0
    for _ in range(200):
        if count >= n:
            break
        a, b = _SEMI_AXES[3]
        radius = rng.uniform(2.4 * a, 5.0 * a) * size
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        phase = rng.uniform(0, 2 * np.pi, 2)
        amp = rng.uniform(0.0, 0.12, 2)
        phi = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        r = radius * (1 + amp[0] * np.cos(2 * phi + phase[0]) + amp[1] * np.cos(3 * phi + phase[1]))
        ys, xs = cy + r * np.sin(phi), cx + r * np.cos(phi)
        seg = np.hypot(np.diff(ys, append=ys[0]), np.diff(xs, append=xs[0]))
        arc = np.cumsum(seg) - seg
        a_n, b_n = _jittered_axes(rng, 3, 400, size)
        # Neighbours side by side; centres spaced so the inner ends (nearer the lumen) do not touch.
        spacing = (b_n + np.roll(b_n, 1) + gap + 0.75) * radius / (radius - a_n)
        m = int(np.searchsorted(np.cumsum(spacing), arc[-1] + seg[-1], side="right"))
        idx = np.searchsorted(arc, np.cumsum(spacing)[:m] - spacing[0]).clip(0, len(phi) - 1)
        ty, tx = np.gradient(ys)[idx], np.gradient(xs)[idx]
        theta = np.arctan2(tx, -ty)  # normal = tangent rotated by 90 degrees
        shift = rng.normal(0, 1.0, m)  # slight pseudo-stratification
        py = ys[idx] + shift * np.sin(theta)
        px = xs[idx] + shift * np.cos(theta)
        keep = _inside(py, px, height, width)
        out.append(np.stack([py, px, a_n[:m], b_n[:m], theta], 1)[keep])
        count += int(keep.sum())
    return np.concatenate(out) if out else np.zeros((0, 5))


def _bundle_candidates(rng, height, width, n, size, gap):
    """Bundles: a bent band of nuclei sharing the band's local direction."""
    out, count = [], 0
    for _ in range(200):
        if count >= n:
            break
        length = rng.uniform(60, 160) * size
        band = rng.uniform(14, 36) * size
        theta0, bend = rng.uniform(0, np.pi), rng.normal(0, 0.008) / size
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        a, b = _SEMI_AXES[4]
        m = int(length * band / (2.5 * a * b * size**2)) + 1
        u = rng.uniform(-length / 2, length / 2, m)
        v = rng.uniform(-band / 2, band / 2, m)
        direction = theta0 + bend * u
        # Centre line: a circular arc through (cy, cx) with curvature `bend`.
        along = u - (bend**2) * u**3 / 6
        across = bend * u**2 / 2 + v
        py = cy + along * np.sin(theta0) + across * np.cos(theta0)
        px = cx + along * np.cos(theta0) - across * np.sin(theta0)
        theta = direction + rng.normal(0, 0.1, m)
        a_n, b_n = _jittered_axes(rng, 4, m, size)
        keep = _inside(py, px, height, width)
        out.append(np.stack([py, px, a_n, b_n, theta], 1)[keep])
        count += int(keep.sum())
    return np.concatenate(out) if out else np.zeros((0, 5))


def _cluster_candidates(rng, height, width, n, size, gap):
    """Dense clusters of small round nuclei plus ~25% scattered ones."""
    n_scatter = n // 4
    # About 10 nuclei end up in a cluster (candidates are drawn with a 4x surplus).
    centres = rng.uniform((0, 0), (height, width), (max(1, (n - n_scatter) // 40), 2))
    member = rng.integers(0, len(centres), n - n_scatter)
    spread = rng.uniform(12, 20, len(centres)) * size
    pts = centres[member] + rng.normal(0, 1, (len(member), 2)) * spread[member, None]
    pts = np.concatenate([pts, rng.uniform((0, 0), (height, width), (n_scatter, 2))])
    a_n, b_n = _jittered_axes(rng, 2, len(pts), size)
    cand = np.stack([pts[:, 0], pts[:, 1], a_n, b_n, rng.uniform(0, np.pi, len(pts))], 1)
    return cand[_inside(cand[:, 0], cand[:, 1], height, width)]


def _scatter_candidates(rng, height, width, n, size, gap):
    pts = rng.uniform((0, 0), (height, width), (n, 2))
    a_n, b_n = _jittered_axes(rng, 1, n, size)
    return np.stack([pts[:, 0], pts[:, 1], a_n, b_n, rng.uniform(0, np.pi, n)], 1)


@njit(cache=True)
def _place_ellipses_kernel(ellipses, cand_types, quota, inst, gap, min_pixels):  # pragma: no cover - jitted
    """Paint candidates in order into ``inst`` where the gap-widened ellipse is free.

    ``quota[t]`` is decremented per placed nucleus of type ``t``; candidates of exhausted types,
    colliding ones and ones with fewer than ``min_pixels`` pixels inside the tile are skipped.
    New ids continue after ``inst.max()``. Returns the indices of placed candidates, in id order.
    """
    height, width = inst.shape
    placed = np.empty(len(ellipses), dtype=np.int64)
    first_id = inst.max() + 1
    k = 0
    for i in range(len(ellipses)):
        t = cand_types[i]
        if quota[t] <= 0:
            continue
        cy, cx, a, b, theta = ellipses[i]
        # Widening both semi-axes by `gap` alone misses a few pixel pairs near the tips of long
        # ellipses; the extra 0.75 px keeps nuclei apart on the pixel grid, diagonals included.
        margin = gap + 0.75 if gap > 0 else 0.0
        outer_a, outer_b = a + margin, b + margin
        c, s = np.cos(theta), np.sin(theta)
        r = int(np.ceil(max(outer_a, outer_b)))
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, height)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, width)
        free, n_in = True, 0
        for y in range(y0, y1):
            for x in range(x0, x1):
                u = (x - cx) * c + (y - cy) * s
                v = -(x - cx) * s + (y - cy) * c
                if (u / outer_a) ** 2 + (v / outer_b) ** 2 <= 1.0 and inst[y, x] != 0:
                    free = False
                if (u / a) ** 2 + (v / b) ** 2 <= 1.0:
                    n_in += 1
        if not free or n_in < min_pixels:
            continue
        for y in range(y0, y1):
            for x in range(x0, x1):
                u = (x - cx) * c + (y - cy) * s
                v = -(x - cx) * s + (y - cy) * c
                if (u / a) ** 2 + (v / b) ** 2 <= 1.0:
                    inst[y, x] = first_id + k
        placed[k] = i
        quota[t] -= 1
        k += 1
    return placed[:k]


def place_ellipses_reference(ellipses, cand_types, quota, inst, gap, min_pixels) -> np.ndarray:
    """Plain NumPy twin of the placement kernel (same arguments and effects), for tests."""
    height, width = inst.shape
    first_id = inst.max() + 1
    placed = []
    for i, (cy, cx, a, b, theta) in enumerate(ellipses):
        if quota[cand_types[i]] <= 0:
            continue
        margin = gap + 0.75 if gap > 0 else 0.0
        r = int(np.ceil(max(a + margin, b + margin)))
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, height)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, width)
        if y1 <= y0 or x1 <= x0:  # entirely outside the tile: no pixel inside
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        outer = (u / (a + margin)) ** 2 + (v / (b + margin)) ** 2 <= 1.0
        body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        window = inst[y0:y1, x0:x1]
        if (window[outer] != 0).any() or body.sum() < min_pixels:
            continue
        window[body] = first_id + len(placed)
        placed.append(i)
        quota[cand_types[i]] -= 1
    return np.asarray(placed, dtype=np.int64)


__all__ = [
    "DEFAULT_TYPE_SHARES",
    "Layout",
    "generate_layout",
    "sanitize_instances",
]
