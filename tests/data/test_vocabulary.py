"""TypeVocabulary: one name -> id mapping per dataset, so a class name means the same class everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthaug.data import CONSEP_TYPES, UNTYPED, BenchmarkSplit, TypeVocabulary
from synthaug.data.vocabulary import resolve_type

PANNUKE = TypeVocabulary(
    {1: "neoplastic", 2: "inflammatory", 3: "connective", 4: "dead", 5: "epithelial"}, {"tumour": 1}
)


@pytest.mark.parametrize("value", [3, np.int64(3), "3", " epithelial ", "Epithelial", "columnar", "COLUMNAR"])
def test_ids_names_aliases_and_digit_text_resolve_to_one_id(value):
    assert CONSEP_TYPES.resolve(value) == 3


def test_the_same_name_is_each_datasets_own_id():
    assert CONSEP_TYPES.resolve("epithelial") == 3 and PANNUKE.resolve("epithelial") == 5
    assert PANNUKE.resolve("tumour") == 1 and PANNUKE.name(3) == "connective"


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("goblet", ValueError, r"`rare` 'goblet' is not a type here; use one of 1 \(other\)"),
        (7, ValueError, "use one of"),
        (0, ValueError, "use one of"),
        (True, TypeError, "`rare` must be a type id"),
        (2.0, TypeError, "got float"),
    ],
)
def test_unknown_or_wrongly_typed_values_name_the_argument_and_the_choices(value, error, match):
    with pytest.raises(error, match=match):
        CONSEP_TYPES.resolve(value, "rare")


@pytest.mark.parametrize(
    ("names", "aliases", "match"),
    [
        ({1: "a", 2: "A"}, {}, "each class once"),
        ({0: "background"}, {}, "positive type id"),
        ({1: ""}, {}, "non-empty"),
        ({1: "a"}, {"b": 2}, "not one of the ids"),
        ({1: "a", 2: "b"}, {"b": 1}, "shadows"),
    ],
)
def test_inconsistent_vocabularies_are_refused(names, aliases, match):
    with pytest.raises(ValueError, match=match):
        TypeVocabulary(names, aliases)


def test_json_round_trip_and_summary_properties():
    again = TypeVocabulary.from_json(json.dumps(CONSEP_TYPES.to_json()))
    assert again == CONSEP_TYPES and again.resolve("fibroblast") == 4
    assert CONSEP_TYPES.num_types == 4 and len(UNTYPED) == 1 and 5 in PANNUKE and 5 not in CONSEP_TYPES
    assert TypeVocabulary.coerce({2: "b"}).names == {2: "b"} and TypeVocabulary.coerce(None).num_types == 0


def test_without_a_vocabulary_only_ids_resolve_and_names_wait_to_be_bound():
    assert resolve_type(5, None) == 5 and resolve_type("5", None) == 5
    assert resolve_type("epithelial", None) is None
    assert resolve_type("epithelial", PANNUKE) == 5
    with pytest.raises(ValueError, match="positive"):
        resolve_type(0, None)


def test_a_split_carries_its_readers_aliases_through_save_and_load(tmp_path):
    from synthaug.data.toy import make_toy_samples

    samples = make_toy_samples(4, 32, 32, seed=0)
    names, aliases = CONSEP_TYPES.names, {"columnar": 3}
    split = BenchmarkSplit(samples[:3], samples[3:], type_names=names, type_aliases=aliases)
    assert split.vocabulary.resolve("columnar") == 3
    again = BenchmarkSplit.from_manifest(split.save(tmp_path / "split.json"), samples)
    assert again.vocabulary == split.vocabulary
    with pytest.raises(ValueError, match="not one of the ids"):
        BenchmarkSplit(samples[:3], samples[3:], type_names={1: "a"}, type_aliases={"b": 2})
