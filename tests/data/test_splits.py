"""Splits by group, leakage refusal, scarcity scenarios and the JSON manifest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from synthaug.data import BenchmarkSplit, Sample, count_instances, scarcity_scenario, split_by_group

TYPES = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}


def patch(name: str, group: str, types: list[int], seed: int = 0) -> Sample:
    """A 16x16 patch with one 2x2 nucleus per entry of ``types``."""
    inst = np.zeros((16, 16), np.int32)
    for k in range(len(types)):
        r, c = divmod(k, 4)
        inst[4 * r : 4 * r + 2, 4 * c : 4 * c + 2] = k + 1
    table = {k + 1: t for k, t in enumerate(types)}
    lut = np.array([0, *types], np.uint8)
    image = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Sample(image=image, inst=inst, types=lut[inst], inst_types=table, name=name, group=group)


def pool(n_groups=10, per_group=3):
    rng = np.random.default_rng(0)
    return [
        patch(f"g{g}_p{p}", f"g{g}", rng.integers(1, 5, rng.integers(1, 12)).tolist(), seed=g * 10 + p)
        for g in range(n_groups)
        for p in range(per_group)
    ]


def test_split_by_group_never_separates_a_group():
    split = split_by_group(pool(), test_fraction=0.3, val_fraction=0.2, seed=1)
    groups = [{s.group for s in getattr(split, k)} for k in ("train", "val", "test")]
    assert (
        groups[0].isdisjoint(groups[1])
        and groups[0].isdisjoint(groups[2])
        and groups[1].isdisjoint(groups[2])
    )
    assert len(split.train) + len(split.val) + len(split.test) == 30
    assert len(groups[2]) == 3 and len(groups[1]) == 2  # fractions are of groups (10)
    again = split_by_group(pool(), test_fraction=0.3, seed=1)
    assert [s.name for s in again.test] == [
        s.name for s in split_by_group(pool(), test_fraction=0.3, seed=1).test
    ]


def test_split_by_group_rejects_bad_fractions():
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_group(pool(), test_fraction=0.0)
    with pytest.raises(ValueError, match="leave room"):
        split_by_group(pool(), test_fraction=0.6, val_fraction=0.4)
    with pytest.raises(ValueError, match="need at least 2 to fill"):
        split_by_group(pool(n_groups=1))


def test_benchmark_split_refuses_leakage():
    a, b = patch("a", "tile1", [1]), patch("b", "tile1", [2], seed=1)
    with pytest.raises(ValueError, match=r"leakage: 1 tile \(group\)"):
        BenchmarkSplit(train=[a], test=[b])
    renamed = dataclasses.replace(a, name="a-copy", group="tile9")
    with pytest.raises(ValueError, match="same image and annotation"):
        BenchmarkSplit(train=[a], test=[renamed])
    with pytest.raises(ValueError, match="more than once"):
        BenchmarkSplit(train=[a, a], test=[])
    split = BenchmarkSplit(train=[a], test=[patch("c", "tile2", [1], seed=2)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.train = (b,)
    assert isinstance(split.train, tuple)


def test_scarcity_makes_the_class_rare_and_leaves_test_alone():
    full = split_by_group(pool(20, 2), test_fraction=0.25, seed=0, type_names=TYPES)
    before = count_instances(full.train)
    rare = scarcity_scenario(full, rare_type="epithelial", target_share=0.1, seed=0)
    after = count_instances(rare.train)
    assert after.get(3, 0) / sum(after.values()) <= 0.1 < before[3] / sum(before.values())
    assert rare.test == full.test
    assert {s.group for s in rare.train} <= {s.group for s in full.train}
    # whole groups are dropped: a kept group keeps all its patches
    kept_groups, kept_names = {s.group for s in rare.train}, {s.name for s in rare.train}
    assert all(s.name in kept_names for s in full.train if s.group in kept_groups)
    scenario = rare.provenance["scenario"]
    assert scenario["rare_type"] == 3 and scenario["share_after"] <= 0.1
    assert sorted(scenario["dropped_train"]) == sorted(s.name for s in full.train if s.name not in kept_names)
    again = scarcity_scenario(full, rare_type=3, target_share=0.1, seed=0)
    assert [s.name for s in again.train] == [s.name for s in rare.train]  # deterministic


def test_scarcity_keep_fraction_and_sample_unit():
    full = split_by_group(pool(20, 2), test_fraction=0.25, seed=0, type_names=TYPES)
    n_groups = len({s.group for s in full.train})
    kept = scarcity_scenario(full, keep_fraction=0.5, seed=3)
    assert len({s.group for s in kept.train}) == round(0.5 * n_groups)
    by_sample = scarcity_scenario(full, rare_type=2, target_share=0.05, unit="sample")
    counts = count_instances(by_sample.train)
    assert counts.get(2, 0) <= 0.05 * sum(counts.values())
    with pytest.raises(ValueError, match="go together"):
        scarcity_scenario(full, rare_type=2)
    with pytest.raises(ValueError, match="`rare_type` .neutrophil. is not a type here"):
        scarcity_scenario(full, rare_type="neutrophil", target_share=0.1)
    with pytest.raises(ValueError, match="`unit` must be one of"):
        scarcity_scenario(full, keep_fraction=0.5, unit="pixel")
    with pytest.raises(ValueError, match="already restricted"):
        scarcity_scenario(kept, rare_type=2, target_share=0.05)
    both = scarcity_scenario(full, keep_fraction=0.5, rare_type=2, target_share=0.2, seed=3)
    assert {s.name for s in both.train} <= {s.name for s in kept.train}  # same seed: rarity within kept
    assert both.train and both.provenance["scenario"]["share_after"] <= 0.2


def test_check_training_only_admits_only_the_restricted_train():
    full = split_by_group(pool(20, 2), test_fraction=0.25, seed=0, type_names=TYPES)
    rare = scarcity_scenario(full, rare_type=3, target_share=0.1)
    rare.check_training_only(rare.train)
    kept = {s.name for s in rare.train}
    dropped = next(s for s in full.train if s.name not in kept)
    with pytest.raises(ValueError, match="not in this benchmark's training split"):
        rare.check_training_only([dropped], purpose="mask source")
    with pytest.raises(ValueError, match="mask source"):
        rare.check_training_only([full.test[0]], purpose="mask source")
    disguised = dataclasses.replace(full.test[0], name=rare.train[0].name)  # a test patch under a train name
    with pytest.raises(ValueError, match="not in this benchmark's training split"):
        rare.check_training_only([disguised])


def test_manifest_round_trip_and_tamper_detection(tmp_path):
    full = split_by_group(pool(), test_fraction=0.3, seed=0, type_names=TYPES)
    rare = scarcity_scenario(full, rare_type=3, target_share=0.15)
    path = rare.save(tmp_path / "split.json")
    every = pool()
    restored = BenchmarkSplit.from_manifest(path, every)
    assert [s.name for s in restored.train] == [s.name for s in rare.train]
    assert restored.provenance == rare.provenance and restored.type_names == TYPES
    manifest = rare.manifest()
    assert manifest["splits"]["test"]["instances"] == {
        TYPES[k]: v for k, v in count_instances(rare.test).items()
    }
    tampered = [
        dataclasses.replace(s, types=s.types * 0) if s.name == rare.train[0].name else s for s in every
    ]
    with pytest.raises(ValueError, match="differ from the manifest"):
        BenchmarkSplit.from_manifest(path, tampered)


def test_the_leakage_guard_runs_in_the_mask_source_and_in_generator_training(tmp_path):
    from synthaug.model import TrainConfig, train_msdm
    from synthaug.sampling.mask_sources import RealMaskSource

    split = split_by_group(pool(12, 2), test_fraction=0.25, seed=0, type_names=TYPES)
    assert len(RealMaskSource(list(split.train), split=split).layouts) == len(split.train)
    with pytest.raises(ValueError, match="a mask source"):
        RealMaskSource([*split.train, split.test[0]], split=split)
    config = TrainConfig(tmp_path / "run", resolution=32, steps=1, model_size="tiny")
    with pytest.raises(ValueError, match="MSDM training"):
        train_msdm(config, [*split.train, split.test[0]], split=split)
    assert not (tmp_path / "run").exists()  # refused before anything was written
