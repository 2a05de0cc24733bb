"""Targeting: requested shares are reached on toy masks, reported honestly, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from synthaug.data import CONSEP_TYPES
from synthaug.data.layouts import generate_layout
from synthaug.data.toy import make_toy_samples
from synthaug.sampling.mask_sources import (
    IndexedMaskSource,
    LayoutMaskSource,
    MaskRecord,
    RealMaskSource,
    whole_instance_shapes,
)
from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy


@pytest.fixture(scope="module")
def toy_source():
    samples = make_toy_samples(6, 96, 96, seed=0, density=0.25)  # CoNSeP-typed toy tiles
    return RealMaskSource(samples, edits=("dihedral",), seed=0, vocabulary=CONSEP_TYPES)


@pytest.mark.parametrize("by", ["instances", "pixels"])
@pytest.mark.parametrize("share", [0.1, 0.5, 0.85])
def test_mean_achieved_share_is_within_tolerance(toy_source, by, share):
    policy = TargetingPolicy("epithelial", share, by=by, tolerance=0.05, max_draws=4)
    targeted = TargetedMaskSource(toy_source, policy, seed=1)
    records = list(targeted.records(0, 6))
    achieved = [targeted.policy.measure(r) for r in records]  # the policy bound to the source's names
    assert abs(np.mean(achieved) - share) <= 0.05
    for record, value in zip(records, achieved):
        record.validate()  # built masks are valid layouts too
        assert float(record.meta["achieved_share"]) == pytest.approx(value, abs=1e-4)  # reported honestly
        assert record.meta["target_type"] == "epithelial" and record.meta["target_by"] == by


def test_extreme_shares_keep_or_remove_a_type():
    source = LayoutMaskSource(64, 64, seed=0, density=0.3)
    only = TargetedMaskSource(source, TargetingPolicy("spindle", 1.0))[0]
    none = TargetedMaskSource(source, TargetingPolicy("spindle", 0.0))[0]
    assert only.num_instances > 0 and set(only.inst_types.values()) == {4}
    assert none.num_instances > 0 and 4 not in set(none.inst_types.values())


def test_choosing_prefers_an_unedited_mask_within_tolerance():
    source = LayoutMaskSource(96, 96, seed=0, type_shares={"epithelial": 0.5, "spindle": 0.5})
    policy = TargetingPolicy(3, 0.5, tolerance=0.1, max_draws=8)
    record, achieved = policy.choose(source, 0)
    assert record.meta["target_edited"] == "false" and abs(achieved - 0.5) <= 0.1
    # Unedited: it is exactly one of the drawn source items.
    assert any(np.array_equal(record.inst, source[j].inst) for j in range(8))


def test_without_building_the_closest_draw_is_kept_unedited():
    # build=False is selection only: every nucleus keeps its real neighbours, even when the share
    # cannot be reached (no toy tile is 95 % epithelial).
    source = LayoutMaskSource(96, 96, seed=3, density=0.25)
    policy = TargetingPolicy("epithelial", 0.95, build=False, max_draws=6, vocabulary=CONSEP_TYPES)
    for index in range(3):
        record, achieved = policy.choose(source, index)
        drawn = [source[index * 6 + j] for j in range(6)]
        assert record.meta["target_edited"] == "false"
        assert achieved == max(policy.measure(d) for d in drawn) < 0.95 - policy.tolerance
        assert any(np.array_equal(record.inst, d.inst) for d in drawn)


def test_building_keeps_density_roughly():
    source = LayoutMaskSource(96, 96, seed=2, density=0.25)
    policy = TargetingPolicy("inflammatory", 0.7, max_draws=2)
    before = np.mean([source[j].num_instances for j in range(10)])
    after = np.mean([r.num_instances for r in TargetedMaskSource(source, policy).records(0, 5)])
    assert 0.6 * before <= after <= 1.5 * before


class SpySource(IndexedMaskSource):
    """A real layout source that records which items were drawn."""

    def __init__(self):
        self.inner, self.name, self.seed, self.drawn = LayoutMaskSource(48, 48, seed=0), "spy", 0, []
        self.vocabulary = CONSEP_TYPES

    def draw(self, index: int) -> MaskRecord:
        self.drawn.append(index)
        return self.inner[index]


def test_items_are_reproducible_and_ranks_use_disjoint_source_items():
    policy = TargetingPolicy("epithelial", 0.6, max_draws=3)
    spy_a, spy_b = SpySource(), SpySource()
    rank0 = list(TargetedMaskSource(spy_a, policy, seed=4).records(0, 3))
    rank1 = list(TargetedMaskSource(spy_b, policy, seed=4).records(3, 6))
    assert set(spy_a.drawn) <= set(range(0, 9)) and set(spy_b.drawn) <= set(range(9, 18))
    again = TargetedMaskSource(SpySource(), policy, seed=4)
    assert np.array_equal(again[4].inst, rank1[1].inst) and again[1].inst_types == rank0[1].inst_types


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"type": "goblet", "vocabulary": CONSEP_TYPES}, ValueError, "type"),
        ({"type": 0}, ValueError, "type"),
        ({"type": 2.5}, TypeError, "type"),
        ({"share": 1.5}, ValueError, "share"),
        ({"by": "area"}, ValueError, "by"),
        ({"tolerance": 0.0}, ValueError, "tolerance"),
        ({"max_draws": 0}, ValueError, "max_draws"),
        ({"gap": -1}, ValueError, "gap"),
    ],
)
def test_policy_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        TargetingPolicy(**({"type": 3, "share": 0.5} | kwargs))


def test_targeted_source_argument_errors():
    with pytest.raises(TypeError, match="source"):
        TargetedMaskSource([1, 2], TargetingPolicy(3, 0.5))
    with pytest.raises(TypeError, match="policy"):
        TargetedMaskSource(LayoutMaskSource(32, 32), {"type": 3})


def test_donor_nuclei_build_up_a_mask_without_the_target_type():
    layout = generate_layout(160, 160, type_shares={"spindle": 1.0}, density=0.15, seed=0)
    assert layout.num_instances >= 10  # shares of a handful of nuclei move in big steps
    donors = list(whole_instance_shapes(generate_layout(96, 96, type_shares={3: 1.0}, seed=1).inst).values())
    policy = TargetingPolicy("epithelial", 0.4, vocabulary=CONSEP_TYPES)
    assert policy.measure(layout) == 0.0
    built = policy.adjust(layout, rng=np.random.default_rng(0), donors=donors).validate()
    assert abs(policy.measure(built) - 0.4) <= policy.tolerance
    # Without donors there is nothing to copy: the share stays, honestly reported as 0.
    assert policy.measure(policy.adjust(layout, rng=np.random.default_rng(0))) == 0.0


def test_a_class_name_needs_the_sources_vocabulary():
    bare = RealMaskSource(make_toy_samples(2, 64, 64, seed=0), edits=(), seed=0)  # no vocabulary
    with pytest.raises(ValueError, match="no vocabulary"):
        TargetedMaskSource(bare, TargetingPolicy("epithelial", 0.5))
    by_id = TargetedMaskSource(bare, TargetingPolicy(3, 0.5))  # an id needs none
    assert by_id[0].meta["target_type"] == "3"


def test_pannuke_epithelial_is_targeted_by_name_as_its_own_id(tmp_path):
    from synthaug.data import open_dataset
    from tests.data import toys

    toys.write_pannuke(tmp_path, n=3, size=32)
    reader = open_dataset(tmp_path)
    samples = reader.load("fold1")
    assert any(t == 5 for s in samples for t in s.inst_types.values())  # the toy has epithelial nuclei
    source = RealMaskSource(samples, edits=(), seed=0, vocabulary=reader.vocabulary)
    targeted = TargetedMaskSource(source, TargetingPolicy("epithelial", 0.9, tolerance=0.1), seed=0)
    assert targeted.policy.type_id == 5  # PanNuke's epithelial, not CoNSeP's 3 (connective here)
    assert targeted.name == "real+epithelial"
    records = list(targeted.records(0, 4))
    assert all(r.meta["target_type"] == "epithelial" for r in records)

    def share(layouts) -> float:
        types = [t for lay in layouts for t in lay.inst_types.values()]
        return types.count(5) / len(types)

    assert share(records) > share(samples) + 0.2
    TargetingPolicy(5, 0.5)  # an id beyond CoNSeP's four is a valid type


def test_strategies_select_without_edits_or_edit_to_the_share():
    source = LayoutMaskSource(96, 96, seed=4, density=0.25)
    select = TargetingPolicy.with_strategy("epithelial", 0.6, "select", vocabulary=CONSEP_TYPES)
    edit = TargetingPolicy.with_strategy("epithelial", 0.6, "edit", vocabulary=CONSEP_TYPES)
    assert (select.build, select.max_draws, edit.build) == (False, 16, True)
    assert select.describe()["edit"] is False and edit.describe()["edit"] is True
    chosen = [select.choose(source, i)[0] for i in range(3)]
    assert all(r.meta["target_edited"] == "false" for r in chosen)
    with pytest.raises(ValueError, match="strategy"):
        TargetingPolicy.with_strategy("epithelial", 0.6, "rebuild")
