"""The nucleus-type vocabulary of a dataset: type ids, their names, and the aliases users type.

One vocabulary per dataset, owned by its reader (``reader.vocabulary``) and carried by
``BenchmarkSplit``, the cache header (``type_names``) and the segmenter config. Every place that
turns a user's ``"epithelial"`` or ``"columnar"`` into an id goes through :meth:`TypeVocabulary.resolve`,
so the same name means the same class everywhere: PanNuke's epithelial is 5, CoNSeP's is 3.

    >>> CONSEP_TYPES.resolve("columnar")
    3
    >>> TypeVocabulary({1: "neoplastic", 5: "epithelial"}).resolve("Epithelial")
    5
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TypeVocabulary:
    """Type id -> class name (0 is background and never listed), plus alias -> type id.

    Args:
        names: ``{id: name}`` with positive ids and distinct names (case-insensitive).
        aliases: other names a class may be targeted by, e.g. ``{"columnar": 3}``; each must point at
            a listed id and not shadow another class's name.

    Raises:
        TypeError / ValueError: naming the argument and the offending entry.
    """

    names: Mapping[int, str]
    aliases: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.names, Mapping):
            raise TypeError(f"`names` must be a mapping type id -> name, got {type(self.names).__name__}.")
        names: dict[int, str] = {}
        for key, value in self.names.items():
            type_id = _as_id(key, "names key")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"`names[{type_id}]` must be a non-empty class name, got {value!r}.")
            names[type_id] = value
        lowered = [v.strip().lower() for v in names.values()]
        if len(set(lowered)) != len(lowered):
            raise ValueError(f"`names` must name each class once (case-insensitive), got {names}.")
        if not isinstance(self.aliases, Mapping):
            kind = type(self.aliases).__name__
            raise TypeError(f"`aliases` must be a mapping name -> type id, got {kind}.")
        aliases: dict[str, int] = {}
        for alias, target in self.aliases.items():
            if not isinstance(alias, str) or not alias.strip():
                raise ValueError(f"`aliases` keys must be non-empty names, got {alias!r}.")
            target_id = _as_id(target, f"aliases[{alias!r}]")
            if target_id not in names:
                raise ValueError(f"`aliases[{alias!r}]` = {target_id} is not one of the ids {sorted(names)}.")
            shadowed = {k for k, v in names.items() if v.strip().lower() == alias.strip().lower()}
            if shadowed - {target_id}:
                raise ValueError(f"alias {alias!r} -> {target_id} shadows the class name of type {shadowed}.")
            aliases[alias] = target_id
        object.__setattr__(self, "names", dict(sorted(names.items())))
        object.__setattr__(self, "aliases", aliases)

    @classmethod
    def coerce(cls, value: TypeVocabulary | Mapping[int, str] | None) -> TypeVocabulary:
        """A vocabulary from itself, a ``{id: name}`` mapping (no aliases) or ``None`` (empty)."""
        if isinstance(value, TypeVocabulary):
            return value
        return cls({} if value is None else value)

    @property
    def ids(self) -> list[int]:
        return list(self.names)

    @property
    def num_types(self) -> int:
        """The largest type id (the number of type channels a model needs), 0 when empty."""
        return max(self.names, default=0)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, type_id: object) -> bool:
        return isinstance(type_id, (int, np.integer)) and int(type_id) in self.names

    def name(self, type_id: int) -> str:
        """The class name of ``type_id`` (its digits when unnamed)."""
        return self.names.get(int(type_id), str(int(type_id)))

    def resolve(self, value: int | str, argument: str = "type") -> int:
        """The type id of a class given by id, name or alias (case-insensitive; ``"3"`` is id 3).

        Raises:
            TypeError: for anything but an int or a str (``argument`` names it).
            ValueError: for an unknown name or id, listing the valid ones.
        """
        _check_kind(value, argument)
        if isinstance(value, str):
            key = value.strip().lower()
            if key.isdigit():
                return self.resolve(int(key), argument)
            lookup = {v.strip().lower(): k for k, v in self.names.items()}
            lookup.update({k.strip().lower(): v for k, v in self.aliases.items()})
            if key in lookup:
                return lookup[key]
        elif int(value) in self.names:
            return int(value)
        raise ValueError(f"`{argument}` {value!r} is not a type here; use one of {self.describe()}.")

    def describe(self) -> str:
        """``"1 (other), 2 (inflammatory), ...; aliases columnar"``, for error messages."""
        text = ", ".join(f"{k} ({v})" for k, v in self.names.items()) or "no types"
        return text + (f"; aliases {', '.join(self.aliases)}" if self.aliases else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (string keys); :meth:`from_json` reads it back."""
        return {"names": {str(k): v for k, v in self.names.items()}, "aliases": dict(self.aliases)}

    @classmethod
    def from_json(cls, record: Mapping[str, Any] | str) -> TypeVocabulary:
        record = json.loads(record) if isinstance(record, str) else record
        return cls({int(k): v for k, v in record["names"].items()}, dict(record.get("aliases", {})))


def resolve_type(value: int | str, vocabulary: TypeVocabulary | None, argument: str = "type") -> int | None:
    """``value`` as a type id: through ``vocabulary`` when given, else only a positive id resolves.

    Without a vocabulary a class *name* cannot be resolved yet and gives ``None`` (the caller binds it
    later, once it knows the data's vocabulary); an id is checked to be positive.
    """
    if vocabulary is not None:
        return vocabulary.resolve(value, argument)
    _check_kind(value, argument)
    if isinstance(value, str):
        return _as_id(int(value.strip()), argument) if value.strip().isdigit() else None
    return _as_id(value, argument)


def _check_kind(value: object, argument: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, str)):
        kind = type(value).__name__
        raise TypeError(f"`{argument}` must be a type id (int) or a class name (str), got {kind}.")


def _as_id(value: object, argument: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, str)):
        raise TypeError(f"`{argument}` must be a positive type id, got {type(value).__name__}.")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"`{argument}` must be a positive type id, got {value!r}.")
        value = int(value.strip())
    if int(value) < 1:
        raise ValueError(f"`{argument}` must be a positive type id (0 is background), got {int(value)}.")
    return int(value)


#: CoNSeP's merged nucleus types (HoVer-Net paper); generated layouts use them too.
CONSEP_TYPES = TypeVocabulary(
    {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"},
    {"columnar": 3, "columnar epithelium": 3, "miscellaneous": 1, "lymphocyte": 2, "fibroblast": 4},
)

#: The vocabulary of a dataset without nucleus types: every nucleus is class 1.
UNTYPED = TypeVocabulary({1: "nucleus"})
