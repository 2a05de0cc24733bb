"""Words for a morphology group, read off its centroid in interpretable-feature z-scores.

A group's description is not invented: every word comes from one coordinate of the group centroid,
expressed as a z-score against the population the prompter was fitted on (0 = the population mean,
1 = one standard deviation above it). The rule, applied feature by feature:

- ``|z| < MENTION_Z`` (0.5 SD): the group is typical for that feature and it is not mentioned;
- ``z <= -MENTION_Z``: the feature's "low" word; ``z >= MENTION_Z``: its "high" word.

Nuclear words form one noun phrase ("dense small round nuclei"); stain words follow it
("light eosin"). A group typical in every feature is called "average morphology". The thresholds
and the vocabulary are module constants so a report can quote them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A feature is mentioned once the centroid lies this many population SDs from the mean.
MENTION_Z: float = 0.5

#: feature name -> (word when low, word when high).
VOCABULARY: dict[str, tuple[str, str]] = {
    "nuclear_density": ("sparse", "dense"),
    "nuclear_area": ("small", "large"),
    "nuclear_eccentricity": ("round", "elongated"),
    "haematoxylin_mean": ("light haematoxylin", "dark haematoxylin"),
    "haematoxylin_std": ("even haematoxylin", "variable haematoxylin"),
    "eosin_mean": ("light eosin", "heavy eosin"),
    "eosin_std": ("even eosin", "variable eosin"),
}

# Order of the words in the nuclear noun phrase (English adjective order: quantity, size, shape).
_NUCLEAR_ORDER = ("nuclear_density", "nuclear_area", "nuclear_eccentricity")
_STAIN_ORDER = ("haematoxylin_mean", "eosin_mean", "haematoxylin_std", "eosin_std")

#: Said when the prompter has no interpretable features to read a centroid with.
EMBEDDING_ONLY_DESCRIPTION = "image-embedding cluster (no interpretable features measured)"
AVERAGE_DESCRIPTION = "average morphology"


def describe_centroid(z_scores: Sequence[float] | np.ndarray, feature_names: Sequence[str]) -> str:
    """Describe one group centroid given in population z-scores.

    Args:
        z_scores: the centroid's coordinate for each interpretable feature, in population SDs.
        feature_names: names matching ``z_scores``; each must be a key of :data:`VOCABULARY`.

    Returns:
        e.g. ``"dense small round nuclei, light eosin"``; :data:`AVERAGE_DESCRIPTION` when no
        feature passes :data:`MENTION_Z`; :data:`EMBEDDING_ONLY_DESCRIPTION` when there are no
        features at all.

    Raises:
        ValueError: if the lengths differ or a feature has no vocabulary entry.

    Example:
        >>> describe_centroid([1.2, -0.8, 0.1], ["nuclear_density", "nuclear_area", "eosin_mean"])
        'dense small nuclei'
    """
    z = np.asarray(z_scores, dtype=np.float64).reshape(-1)
    names = list(feature_names)
    if len(names) != z.size:
        raise ValueError(
            f"`z_scores` has {z.size} values but `feature_names` has {len(names)} names; pass one z-score "
            "per feature."
        )
    unknown = [name for name in names if name not in VOCABULARY]
    if unknown:
        raise ValueError(f"`feature_names` has no vocabulary for {unknown}; known: {sorted(VOCABULARY)}.")
    if not names:
        return EMBEDDING_ONLY_DESCRIPTION
    words = {}
    for name, value in zip(names, z):
        if abs(value) >= MENTION_Z:
            low, high = VOCABULARY[name]
            words[name] = high if value > 0 else low
    nuclear = [words[name] for name in _NUCLEAR_ORDER if name in words]
    stain = [words[name] for name in _STAIN_ORDER if name in words]
    parts = ([" ".join(nuclear) + " nuclei"] if nuclear else []) + stain
    return ", ".join(parts) if parts else AVERAGE_DESCRIPTION
