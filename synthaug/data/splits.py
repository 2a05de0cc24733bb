"""Splits by tile, the leakage-proof :class:`BenchmarkSplit`, and scarcity scenarios.

A benchmark that trains a generator on annotations and then scores segmentation on a test split is
only honest if no test annotation ever reaches the generator or its mask sources. So:

* :class:`BenchmarkSplit` refuses to exist when a name, a group (tile) or an identical image +
  annotation is in two splits;
* :func:`scarcity_scenario` returns a *new* split whose train part is the restricted one, and
  records what was dropped;
* :meth:`BenchmarkSplit.check_training_only` is what downstream code (mask sources, generator
  training) calls on whatever it is handed: it raises unless every sample is in the restricted train;
* :meth:`BenchmarkSplit.save` writes names, groups and content fingerprints to JSON, so a benchmark
  report can prove which annotations were used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from synthaug._validation import check_choice, check_probability
from synthaug.data.readers.base import DatasetReader
from synthaug.data.record import Sample
from synthaug.data.vocabulary import TypeVocabulary, resolve_type

MANIFEST_FORMAT = "synthaug.benchmark_split/1"
_SPLITS = ("train", "val", "test")


def sample_fingerprint(sample: Sample) -> str:
    """A content hash of a sample's image, instance mask and type map (blake2b, 16 hex digits).

    Two samples with the same pixels and annotation share a fingerprint whatever their names, so a
    renamed copy of a test patch is still caught. The image is part of the hash because distinct
    patches may share an annotation (every patch without nuclei has the same empty mask).
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.asarray(sample.inst.shape, np.int64).tobytes())
    digest.update(np.ascontiguousarray(sample.image, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(sample.inst, dtype=np.int32).tobytes())
    digest.update(np.ascontiguousarray(sample.types, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def count_instances(samples: Iterable[Sample]) -> dict[int, int]:
    """Number of nuclei per type id over ``samples`` (a nucleus cut by a patch border counts per patch)."""
    counts: dict[int, int] = {}
    for sample in samples:
        for type_id in sample.inst_types.values():
            counts[type_id] = counts.get(type_id, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class BenchmarkSplit:
    """Train / val / test samples that provably share no tile, no name and no annotation.

    Args:
        train: the (possibly restricted) training samples: the only annotations a generator or a
            mask source may see.
        test: held-out samples for scoring.
        val: optional validation samples.
        type_names: type id -> class name, for reports and for targeting a class by name.
        provenance: JSON-serialisable record of how the split was made (reader, scenario, seed, ...).
        type_aliases: other names of the classes (e.g. ``{"columnar": 3}``); with ``type_names`` they
            are :attr:`vocabulary`, the dataset's one name -> id mapping.

    Raises:
        ValueError: if a sample name, group or content fingerprint (:func:`sample_fingerprint`)
            appears in two splits, a name twice in one split, or ``provenance`` is not
            JSON-serialisable.
    """

    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    val: tuple[Sample, ...] = ()
    type_names: Mapping[int, str] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    type_aliases: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in _SPLITS:
            samples = getattr(self, split)
            if not isinstance(samples, Iterable):
                raise TypeError(f"`{split}` must be a sequence of synthaug.data.Sample records.")
            samples = tuple(samples)  # a tuple: the split cannot be appended to later
            if not all(isinstance(s, Sample) for s in samples):
                raise TypeError(f"`{split}` must hold only synthaug.data.Sample records.")
            object.__setattr__(self, split, samples)
            names = [s.name for s in samples]
            if len(set(names)) != len(names):
                dupes = sorted({n for n in names if names.count(n) > 1})
                raise ValueError(f"`{split}` holds sample names more than once: {dupes[:5]}.")
        vocabulary = TypeVocabulary(self.type_names, self.type_aliases)  # validates both
        object.__setattr__(self, "type_names", dict(vocabulary.names))
        object.__setattr__(self, "type_aliases", dict(vocabulary.aliases))
        try:  # a JSON round trip both checks and deep-copies, so later edits to the input cannot leak in
            object.__setattr__(self, "provenance", json.loads(json.dumps(dict(self.provenance))))
        except TypeError as err:
            raise ValueError(f"`provenance` must be JSON-serialisable: {err}.") from err
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            self._check_disjoint(a, b)

    @property
    def vocabulary(self) -> TypeVocabulary:
        """The split's types and aliases: ``split.vocabulary.resolve("epithelial")`` is an id."""
        return TypeVocabulary(self.type_names, self.type_aliases)

    def _check_disjoint(self, a: str, b: str) -> None:
        left, right = getattr(self, a), getattr(self, b)
        for what, key in (("tile (group)", lambda s: s.group), ("sample name", lambda s: s.name)):
            shared = sorted({key(s) for s in left} & {key(s) for s in right})
            if shared:
                raise ValueError(
                    f"leakage: {len(shared)} {what}(s) are in both `{a}` and `{b}` (first: {shared[:5]}); "
                    "split by group with `split_by_group`."
                )
        shared = set(self._fingerprints(a)) & set(self._fingerprints(b))
        if shared:
            names = [s.name for s in right if sample_fingerprint(s) in shared]
            raise ValueError(
                f"leakage: `{b}` samples {names[:5]} have the same image and annotation as samples in `{a}`."
            )

    def _fingerprints(self, split: str) -> tuple[str, ...]:
        return self._all_fingerprints[split]

    @cached_property
    def _all_fingerprints(self) -> dict[str, tuple[str, ...]]:
        return {split: tuple(sample_fingerprint(s) for s in getattr(self, split)) for split in _SPLITS}

    @classmethod
    def from_reader(
        cls, reader: DatasetReader, *, train: str = "train", test: str = "test", val: str | None = None
    ) -> BenchmarkSplit:
        """Load a dataset's own splits into a :class:`BenchmarkSplit` (e.g. CoNSeP's Train/Test).

        Args:
            reader: a :class:`~synthaug.data.DatasetReader`.
            train: name of the training split.
            test: name of the test split.
            val: optional name of a validation split.
        """
        provenance = {
            "reader": reader.name,
            "root": str(reader.root),
            "splits": {"train": train, "test": test},
        }
        if val is not None:
            provenance["splits"]["val"] = val
        return cls(
            train=reader.load(train),
            test=reader.load(test),
            val=reader.load(val) if val is not None else (),
            type_names=reader.type_names,
            type_aliases=reader.type_aliases,
            provenance=provenance,
        )

    def check_training_only(self, samples: Iterable[Sample], *, purpose: str = "training") -> None:
        """Raise unless every sample is one of this split's (restricted) training samples.

        Mask sources and generator training call this on what they are handed, so a test patch,
        a renamed copy of one, or a training patch a scarcity scenario dropped cannot get in.

        Raises:
            ValueError: naming the offending samples and ``purpose``.
        """
        allowed = {(s.name, fp) for s, fp in zip(self.train, self._fingerprints("train"))}
        held_out = set(self._fingerprints("test")) | set(self._fingerprints("val"))
        bad = []
        for sample in samples:
            fingerprint = sample_fingerprint(sample)
            if fingerprint in held_out or (sample.name, fingerprint) not in allowed:
                bad.append(sample.name)
        if bad:
            raise ValueError(
                f"{len(bad)} sample(s) given for {purpose} are not in this benchmark's training split "
                f"(first: {bad[:5]}); only `split.train` may be used."
            )

    def manifest(self) -> dict[str, Any]:
        """The JSON record: per split the names, groups, fingerprints and nucleus counts, plus provenance."""
        splits = {}
        for split in _SPLITS:
            samples = getattr(self, split)
            counts = count_instances(samples)
            splits[split] = {
                "num_samples": len(samples),
                "num_groups": len({s.group for s in samples}),
                "instances": {self.type_names.get(k, str(k)): v for k, v in counts.items()},
                "names": [s.name for s in samples],
                "groups": [s.group for s in samples],
                "fingerprints": list(self._fingerprints(split)),
            }
        return {
            "format": MANIFEST_FORMAT,
            "type_names": {str(k): v for k, v in self.type_names.items()},
            "type_aliases": dict(self.type_aliases),
            "provenance": self.provenance,
            "splits": splits,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`manifest` as JSON to ``path`` and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.manifest(), indent=1))
        return path

    @classmethod
    def from_manifest(cls, path: str | Path, samples: Iterable[Sample]) -> BenchmarkSplit:
        """Rebuild a saved split from a pool of samples, checking every annotation is unchanged.

        Raises:
            ValueError: if the file is not a manifest, a listed sample is missing from ``samples``,
                or its fingerprint differs from the recorded one.
        """
        path = Path(path)
        record = json.loads(path.read_text())
        if record.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{path}: not a {MANIFEST_FORMAT} manifest (format {record.get('format')!r}).")
        pool = {s.name: s for s in samples}
        parts: dict[str, list[Sample]] = {}
        for split in _SPLITS:
            entry = record["splits"][split]
            missing = [n for n in entry["names"] if n not in pool]
            if missing:
                raise ValueError(
                    f"{path}: {len(missing)} `{split}` sample(s) missing from `samples`: {missing[:5]}."
                )
            parts[split] = [pool[n] for n in entry["names"]]
            changed = [
                s.name for s, fp in zip(parts[split], entry["fingerprints"]) if sample_fingerprint(s) != fp
            ]
            if changed:
                raise ValueError(
                    f"{path}: annotations of `{split}` samples {changed[:5]} differ from the manifest."
                )
        type_names = {int(k): v for k, v in record["type_names"].items()}
        aliases = record.get("type_aliases", {})  # manifests before aliases were recorded have none
        return cls(**parts, type_names=type_names, type_aliases=aliases, provenance=record["provenance"])


def split_by_group(
    samples: Sequence[Sample],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    seed: int = 0,
    type_names: Mapping[int, str] | None = None,
    type_aliases: Mapping[str, int] | None = None,
) -> BenchmarkSplit:
    """Split samples so all patches of a tile (``Sample.group``) land in the same split.

    Fractions are of groups, not of samples, rounded to whole groups (at least one each), then
    drawn with sklearn's ``GroupShuffleSplit``.

    Args:
        samples: the samples to split.
        test_fraction: share of groups held out for testing, in (0, 1).
        val_fraction: share of groups for validation, in [0, 1); 0 makes no validation split.
        seed: random seed of the shuffle.
        type_names: type id -> class name, kept on the result.
        type_aliases: other class names (``reader.type_aliases``), kept on the result.

    Returns:
        A :class:`BenchmarkSplit` (``.train``, ``.val``, ``.test``).

    Raises:
        ValueError: for fractions out of range or too few groups to fill every split.
    """
    # sklearn takes seconds to import; every `import synthaug.data` would pay for it otherwise
    from sklearn.model_selection import GroupShuffleSplit

    samples = list(samples)
    check_probability(test_fraction, "test_fraction")
    check_probability(val_fraction, "val_fraction")
    if not 0 < test_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(
            f"`test_fraction` ({test_fraction}) must lie in (0, 1) and leave room for training next to "
            f"`val_fraction` ({val_fraction})."
        )
    groups = np.array([s.group for s in samples])
    n_groups = len(set(groups.tolist()))
    # whole numbers of groups (at least one per requested split), so float round-off cannot add one
    n_test = max(1, round(test_fraction * n_groups))
    n_val = max(1, round(val_fraction * n_groups)) if val_fraction > 0 else 0
    if n_groups - n_test - n_val < 1:
        needed = 3 if val_fraction > 0 else 2
        raise ValueError(f"`samples` span {n_groups} group(s); need at least {needed} to fill every split.")
    rest, test = next(GroupShuffleSplit(1, test_size=n_test, random_state=seed).split(groups, groups=groups))
    val = np.array([], dtype=int)
    if n_val:
        inner = GroupShuffleSplit(1, test_size=n_val, random_state=seed)
        keep, val_idx = next(inner.split(rest, groups=groups[rest]))
        rest, val = rest[keep], rest[val_idx]
    provenance = {
        "split": "split_by_group",
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "seed": seed,
    }
    return BenchmarkSplit(
        train=[samples[i] for i in sorted(rest)],
        test=[samples[i] for i in sorted(test)],
        val=[samples[i] for i in sorted(val)],
        type_names=type_names or {},
        type_aliases=type_aliases or {},
        provenance=provenance,
    )


def scarcity_scenario(
    split: BenchmarkSplit,
    *,
    rare_type: int | str | None = None,
    target_share: float | None = None,
    keep_fraction: float | None = None,
    unit: str = "group",
    seed: int = 0,
) -> BenchmarkSplit:
    """Restrict the training split, leaving val and test untouched.

    Two restrictions, applied in this order when both are given:

    * ``keep_fraction``: keep a seeded random share of the training groups (or samples);
    * ``rare_type`` + ``target_share``: drop whole training groups (or samples) until nuclei of
      ``rare_type`` are at most ``target_share`` of all training nuclei. Units richest in the rare
      class go first (ties broken by the seed), which removes the most rare nuclei per other
      nucleus lost; the share reached is recorded (it may undershoot the target by one unit).

    Args:
        split: the full benchmark split.
        rare_type: the class to make rare, by id, name or alias (``split.vocabulary``).
        target_share: the largest share of training nuclei the rare class may keep, in [0, 1).
        keep_fraction: share of training units to keep, in (0, 1].
        unit: ``"group"`` (drop whole tiles) or ``"sample"`` (drop single patches).
        seed: seed of the random choices.

    Returns:
        A new :class:`BenchmarkSplit` whose ``provenance["scenario"]`` records the parameters, the
        rare share before/after and the dropped training names.

    Raises:
        ValueError: for missing/out-of-range arguments, an already restricted ``split``, or a
            restriction that leaves no training sample.
    """
    if not isinstance(split, BenchmarkSplit):
        raise TypeError(f"`split` must be a BenchmarkSplit, got {type(split).__name__}.")
    check_choice(unit, "unit", ("group", "sample"))
    if (rare_type is None) != (target_share is None):
        raise ValueError("`rare_type` and `target_share` go together: give both or neither.")
    if rare_type is None and keep_fraction is None:
        raise ValueError("give `rare_type` + `target_share`, `keep_fraction`, or both.")
    if "scenario" in split.provenance:
        # one scenario per split keeps the provenance a single readable record
        raise ValueError(
            "`split` is already restricted; call scarcity_scenario once on the full split, giving "
            "`keep_fraction` and `rare_type` together if you need both."
        )
    rng = np.random.default_rng(seed)
    key = (lambda s: s.group) if unit == "group" else (lambda s: s.name)
    train = list(split.train)
    scenario: dict[str, Any] = {"unit": unit, "seed": seed}

    if keep_fraction is not None:
        check_probability(keep_fraction, "keep_fraction")
        if keep_fraction == 0:
            raise ValueError("`keep_fraction` must be > 0; a benchmark needs some training data.")
        units = sorted({key(s) for s in train})
        n_keep = max(1, round(keep_fraction * len(units)))
        kept = set(rng.choice(units, size=n_keep, replace=False).tolist())
        train = [s for s in train if key(s) in kept]
        scenario["keep_fraction"] = keep_fraction

    if rare_type is not None:
        # a split without type names (toy data) still takes ids; a name needs the vocabulary
        rare = resolve_type(rare_type, split.vocabulary if split.type_names else None, "rare_type")
        if rare is None:
            raise ValueError(f"`rare_type` {rare_type!r} is a name but `split` names no types; give an id.")
        check_probability(target_share, "target_share")
        if target_share >= 1:
            raise ValueError("`target_share` must be < 1 for the class to become rare.")
        units = sorted({key(s) for s in train})
        rare_n = dict.fromkeys(units, 0)
        total_n = dict.fromkeys(units, 0)
        for s in train:
            rare_n[key(s)] += sum(1 for t in s.inst_types.values() if t == rare)
            total_n[key(s)] += len(s.inst_types)
        tiebreak = dict(zip(units, rng.permutation(len(units)).tolist()))
        order = sorted(
            (u for u in units if rare_n[u] > 0), key=lambda u: (-rare_n[u] / total_n[u], tiebreak[u])
        )
        n_rare, n_total = sum(rare_n.values()), sum(total_n.values())
        scenario.update(
            rare_type=rare,
            rare_name=split.type_names.get(rare, str(rare)),
            target_share=target_share,
            share_before=n_rare / max(n_total, 1),
        )
        dropped_units = set()
        for u in order:
            if n_rare <= target_share * n_total:
                break
            dropped_units.add(u)
            n_rare -= rare_n[u]
            n_total -= total_n[u]
        train = [s for s in train if key(s) not in dropped_units]
        scenario["share_after"] = n_rare / max(n_total, 1)

    if not train:
        raise ValueError(
            "the scarcity scenario left no training sample; raise `keep_fraction` or `target_share`."
        )
    kept_names = {s.name for s in train}
    scenario["dropped_train"] = [s.name for s in split.train if s.name not in kept_names]
    provenance = {**split.provenance, "scenario": scenario}
    return BenchmarkSplit(
        train=train,
        test=split.test,
        val=split.val,
        type_names=split.type_names,
        type_aliases=split.type_aliases,
        provenance=provenance,
    )
