"""paste_instances: pasted nuclei keep their margin from real ones, and every nucleus that fits is pasted."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from synthaug.augment._paste import paste_instances


def _random_layout(rng: np.random.Generator, size: int, count: int, num_types: int):
    """Random (possibly touching) rectangles as instances, each of one random type."""
    inst = np.zeros((size, size), np.int32)
    types = np.zeros((size, size), np.uint8)
    for label in range(1, count + 1):
        top, left = rng.integers(0, size - 2, 2)
        h, w = rng.integers(1, 6, 2)
        inst[top:top + h, left:left + w] = label
        types[top:top + h, left:left + w] = rng.integers(1, num_types + 1)
    return inst, types


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), margin=st.integers(0, 3), restrict=st.booleans())
def test_paste_matches_the_iterated_dilation_reference(seed, margin, restrict):
    rng = np.random.default_rng(seed)
    size = 24
    inst, types = _random_layout(rng, size, int(rng.integers(0, 5)), 3)
    syn_inst, syn_types = _random_layout(rng, size, int(rng.integers(0, 8)), 3)
    image = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
    syn_image = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
    type_ids = (2,) if restrict else None

    out_image, out_inst, out_types, count = paste_instances(
        image, inst, types, syn_image, syn_inst, syn_types, type_ids=type_ids, margin=margin
    )

    # Reference: `margin` iterations of a 3x3 dilation; a synthetic nucleus fits when it misses it.
    blocked = inst > 0
    if margin and blocked.any():
        blocked = ndimage.binary_dilation(blocked, np.ones((3, 3), bool), iterations=margin)
    fits = []
    for label in np.unique(syn_inst[syn_inst > 0]):
        pixels = syn_inst == label
        votes = np.bincount(syn_types[pixels])
        votes[0] = 0  # background pixels do not vote (the package-wide instance-type vote)
        majority = votes.argmax() if votes.any() else 0
        if (type_ids is None or majority in type_ids) and not (pixels & blocked).any():
            fits.append(pixels)
    expected = np.any(fits, axis=0) if fits else np.zeros_like(blocked)

    assert count == len(fits)
    changed = out_inst != inst
    assert np.array_equal(changed, expected)
    assert np.array_equal(out_image[:, expected], syn_image[:, expected])
    assert np.array_equal(out_image[:, ~expected], image[:, ~expected])
    assert np.array_equal(out_types[expected], syn_types[expected])
    assert np.array_equal(out_types[~expected], types[~expected])
    if count:  # new ids follow the real ones, one per pasted nucleus
        assert set(np.unique(out_inst[expected])) == set(range(inst.max() + 1, inst.max() + count + 1))
