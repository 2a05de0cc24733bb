"""MorphologyPrompter: groups, descriptions that follow the centroids, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthaug.prompts import MorphologyPrompter, PromptAssignment
from synthaug.prompts.describe import EMBEDDING_ONLY_DESCRIPTION


def _groups_by_kind(assignments: list[PromptAssignment], kinds: list[str]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for assignment, kind in zip(assignments, kinds):
        found.setdefault(kind, set()).add(assignment.group)
    return found


def test_silhouette_finds_the_two_obvious_groups(toy_tiles, encoder):
    images, masks, kinds = toy_tiles
    prompter = MorphologyPrompter(k_range=(2, 6), extractor=encoder, n_init=3)
    assignments = prompter.fit_transform(images, masks, labels=kinds)
    assert prompter.k_ == 2
    assert set(prompter.scores_) == {2, 3, 4, 5, 6}
    by_kind = _groups_by_kind(assignments, kinds)
    assert len(by_kind["purple"]) == 1 and len(by_kind["pink"]) == 1
    assert by_kind["purple"] != by_kind["pink"]
    # each group holds one label only, and the counts say so
    purple, pink = by_kind["purple"].pop(), by_kind["pink"].pop()
    assert prompter.group_label_counts_["purple"][purple] == 12
    assert prompter.group_label_counts_["pink"][pink] == 12


def test_descriptions_follow_the_centroids(toy_tiles, encoder):
    images, masks, kinds = toy_tiles
    prompter = MorphologyPrompter(k=2, extractor=encoder, n_init=3).fit(images, masks)
    assignments = prompter.transform(images, masks, labels=["tumour"] * len(images))
    purple = assignments[kinds.index("purple")]
    pink = assignments[kinds.index("pink")]
    purple_text = prompter.descriptions_[purple.group]
    pink_text = prompter.descriptions_[pink.group]
    assert purple_text != pink_text
    # purple tiles: many small round nuclei in dark haematoxylin; pink: few large elongated, pale
    assert purple_text.startswith("dense small round nuclei") and "dark haematoxylin" in purple_text
    assert pink_text.startswith("sparse large elongated nuclei") and "light haematoxylin" in pink_text
    # the words are read off the centroid's z-scores, feature by feature
    names = prompter.feature_names_
    assert prompter.centroid_z_[purple.group][names.index("nuclear_density")] > 0.5
    assert prompter.centroid_z_[pink.group][names.index("nuclear_eccentricity")] > 0.5
    assert purple.prompt == f"tumour tissue, morphology group {purple.group}: {purple_text}"


def test_stain_only_without_masks_and_embedding_only_says_so(toy_tiles, encoder):
    images, _, kinds = toy_tiles
    stain = MorphologyPrompter(k=2, extractor=encoder, n_init=3).fit(images)
    assert "nuclear_density" not in stain.feature_names_
    assert all("nuclei" not in text for text in stain.descriptions_)
    assert len(set(stain.descriptions_)) == 2
    embedding_only = MorphologyPrompter(k=2, extractor=encoder, morphometrics=False, n_init=3).fit(images)
    assert embedding_only.descriptions_ == [EMBEDDING_ONLY_DESCRIPTION] * 2
    assert len({a.group for a in embedding_only.transform(images)}) == 2


def test_same_seed_same_groups(toy_tiles, encoder):
    images, masks, _ = toy_tiles
    # k=4 on two natural clusters: the split inside each cluster depends on the seed only
    first = MorphologyPrompter(k=4, extractor=encoder, n_init=2, seed=7).fit_transform(images, masks)
    second = MorphologyPrompter(k=4, extractor=encoder, n_init=2, seed=7).fit_transform(images, masks)
    assert first == second


@pytest.mark.parametrize("selection", ["silhouette", "bic"])
def test_prompts_stable_after_save_load(toy_tiles, encoder, tmp_path, selection):
    images, masks, kinds = toy_tiles
    prompter = MorphologyPrompter(k_range=(2, 4), selection=selection, extractor=encoder, n_init=2)
    before = prompter.fit_transform(images, masks, kinds)
    prompter.save(tmp_path)
    config = json.loads((tmp_path / "prompter_config.json").read_text())
    assert config["extractor_name"] == "colour-stats" and config["k_"] == prompter.k_
    assert not list(tmp_path.glob("*.pkl"))
    loaded = MorphologyPrompter.load(tmp_path, extractor=encoder)
    assert loaded.transform(images, masks, kinds) == before
    assert loaded.descriptions_ == prompter.descriptions_
    assert loaded.scores_ == prompter.scores_
    np.testing.assert_allclose(loaded.centroid_z_, prompter.centroid_z_)


def test_load_custom_extractor_must_be_passed(toy_tiles, encoder, tmp_path):
    images, _, _ = toy_tiles
    MorphologyPrompter(k=2, extractor=encoder, n_init=1).fit(images).save(tmp_path)
    with pytest.raises(ValueError, match="custom extractor 'colour-stats'"):
        MorphologyPrompter.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="prompter_config.json"):
        MorphologyPrompter.load(tmp_path / "missing")


def test_too_few_samples_for_k(toy_tiles, encoder):
    images, _, _ = toy_tiles
    with pytest.raises(ValueError, match=r"Too few samples for k=5: got 3 images"):
        MorphologyPrompter(k=5, extractor=encoder).fit(images[:3])
    with pytest.raises(ValueError, match=r"Too few samples to choose k .* got 2 images, need at least 3"):
        MorphologyPrompter(extractor=encoder).fit(images[:2])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 1}, ValueError, "`k` must be an integer >= 2"),
        ({"k": 2.5}, TypeError, "`k` must be an int"),
        ({"k_range": (5, 3)}, ValueError, r"`k_range\[1\]` must be an integer >= 5"),
        ({"k_range": (1, 3)}, ValueError, r"`k_range\[0\]` must be an integer >= 2"),
        ({"selection": "elbow"}, ValueError, "`selection` must be one of"),
        ({"extractor": 3}, TypeError, "`extractor` must be"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        MorphologyPrompter(**kwargs)


def test_input_errors(toy_tiles, encoder):
    images, masks, kinds = toy_tiles
    prompter = MorphologyPrompter(k=2, extractor=encoder, n_init=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        prompter.transform(images)
    with pytest.raises(ValueError, match="`masks` has 3 entries but `images` has 24"):
        prompter.fit(images, masks[:3])
    with pytest.raises(ValueError, match="`labels` has 1 entries"):
        prompter.fit(images, labels=kinds[:1])
    with pytest.raises(ValueError, match=r"`masks\[0\]` has shape \(4, 4\)"):
        prompter.fit(images, [np.zeros((4, 4), np.int32)] * len(images))
    prompter.fit(images, masks)
    with pytest.raises(ValueError, match="`masks` is required"):
        prompter.transform(images)
    with pytest.raises(ValueError, match=r"`group` must be an int in \[0, 1\]"):
        prompter.prompt_for(2)


def test_default_encoder_is_efficientnet_lite0(toy_tiles, tmp_path):
    images, masks, kinds = toy_tiles
    subset = images[:4] + images[-4:]
    prompter = MorphologyPrompter(k=2, n_init=2, batch_size=8).fit(subset)
    assert prompter.extractor_name_ == "efficientnet-lite0"
    assert prompter._state["embed_mean"].shape == (1280,)
    groups = [a.group for a in prompter.transform(subset)]
    assert groups[:4] != groups[4:] and len(set(groups[:4])) == 1
    prompter.save(tmp_path)
    assert MorphologyPrompter.load(tmp_path).transform(subset) == prompter.transform(subset)


def test_assignment_meta_reaches_the_msdm_text_prompt(toy_tiles, encoder):
    metadata_to_text = pytest.importorskip("synthaug.model.text").metadata_to_text
    images, masks, _ = toy_tiles
    assignment = MorphologyPrompter(k=2, extractor=encoder, n_init=1).fit_transform(images, masks)[0]
    text = metadata_to_text({"label": "tumour", "source": "pcam", **assignment.meta})
    assert text == f"label: tumour. morphology group: {assignment.group}: {assignment.description}."
