"""Words from centroid z-scores, and the morphometric features they describe."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import disk

from synthaug.prompts import MENTION_Z, VOCABULARY, describe_centroid, mask_features, stain_features
from synthaug.prompts.describe import AVERAGE_DESCRIPTION, EMBEDDING_ONLY_DESCRIPTION

NAMES = list(VOCABULARY)


def test_nuclear_phrase_then_stain_words():
    z = {"nuclear_density": 1.2, "nuclear_area": -0.9, "nuclear_eccentricity": -0.6, "eosin_mean": -2.0}
    assert describe_centroid(list(z.values()), list(z)) == "dense small round nuclei, light eosin"


def test_typical_groups_and_no_features():
    assert describe_centroid([0.1, -0.4], ["nuclear_area", "eosin_mean"]) == AVERAGE_DESCRIPTION
    assert describe_centroid([], []) == EMBEDDING_ONLY_DESCRIPTION


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=len(NAMES), max_size=len(NAMES)))
def test_a_word_appears_exactly_when_its_z_passes_the_threshold(z):
    text = describe_centroid(z, NAMES)
    for name, value in zip(NAMES, z):
        low, high = VOCABULARY[name]
        assert (high in text) == (value >= MENTION_Z)
        assert (low in text) == (value <= -MENTION_Z)


def test_describe_errors():
    with pytest.raises(ValueError, match="`z_scores` has 2 values but `feature_names` has 1"):
        describe_centroid([0.0, 1.0], ["eosin_mean"])
    with pytest.raises(ValueError, match="no vocabulary for \\['texture'\\]"):
        describe_centroid([1.0], ["texture"])


def test_mask_features_by_hand():
    inst = np.zeros((100, 100), np.int32)
    inst[disk((30, 30), 5)] = 1
    inst[10:14, 60:80] = 2  # 4 x 20 rectangle: elongated
    density, area, eccentricity = mask_features(inst)
    assert density == pytest.approx(2.0)  # 2 nuclei per 10,000 px
    assert area == pytest.approx(((inst == 1).sum() + 80) / 2)
    assert 0.4 < eccentricity < 0.6  # mean of ~0 (disk) and ~0.98 (rectangle)
    empty = mask_features(np.zeros((8, 8), np.int32))
    assert empty[0] == 0 and np.isnan(empty[1:]).all()
    with pytest.raises(TypeError, match="`inst` is a boolean mask"):
        mask_features(np.zeros((8, 8), bool))


def test_stain_features_rank_haematoxylin_and_eosin():
    purple = np.full((8, 8, 3), (60, 30, 110), np.uint8)
    pink = np.full((8, 8, 3), (230, 150, 190), np.uint8)
    h_purple, h_std, e_purple, _ = stain_features(purple)
    h_pink, _, e_pink, _ = stain_features(pink)
    assert h_purple > h_pink and h_std == pytest.approx(0.0, abs=1e-9)
    assert stain_features(pink.astype(np.float32) / 255) == pytest.approx(stain_features(pink))
    with pytest.raises(ValueError, match="`image` must be an RGB image"):
        stain_features(np.zeros((8, 8)))
