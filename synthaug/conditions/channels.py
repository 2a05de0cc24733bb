"""``ConditionChannels``: which condition channels a model takes, in which order, stored as data.

A trained MSDM keeps its channels in its config (``channels.to_dict()``), so sampling rebuilds exactly
the stack the model was trained on and a mismatch is an error instead of silently wrong channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synthaug._validation import check_choice, check_int

#: Condition groups in their fixed channel order.
CONDITION_GROUPS: tuple[str, ...] = ("mask", "boundary", "hv", "types", "colour")
HV_CONVENTIONS: tuple[str, ...] = ("monai", "hovernet")


@dataclass(frozen=True)
class ConditionChannels:
    """Which channels a condition stack built by :func:`build_conditions` holds, in which order.

    Channels always come in the order ``mask, boundary, hv_h, hv_v, type_1..type_T, colour_r,
    colour_g, colour_b``, restricted to the groups in ``include``; ``include`` is stored in that
    canonical order, so two channel sets with the same groups compare equal whatever order they were
    given in.

    Args:
        num_types: number of nucleus types T (one-hot channels ``type_1..type_T``; background has
            no channel). Must be >= 1 when ``"types"`` is included.
        include: the condition groups to stack, a subset of
            ``("mask", "boundary", "hv", "types", "colour")``.
        hv_convention: ``"monai"`` or ``"hovernet"``, the HV-map definition used for ``hv``
            (see :func:`synthaug.conditions.compute_hv_maps`).

    Raises:
        TypeError: if ``num_types`` is not an int or ``include`` is a bare string.
        ValueError: on unknown or repeated groups, an empty ``include``, ``num_types < 1`` with
            ``"types"`` included, or an unknown ``hv_convention``.

    Example:
        >>> channels = ConditionChannels(num_types=2, include=("mask", "hv", "types"))
        >>> channels.names
        ('mask', 'hv_h', 'hv_v', 'type_1', 'type_2')
        >>> ConditionChannels.from_dict(channels.to_dict()) == channels
        True
    """

    num_types: int = 4
    include: tuple[str, ...] = CONDITION_GROUPS
    hv_convention: str = "monai"

    def __post_init__(self) -> None:
        check_int(self.num_types, "num_types")
        if isinstance(self.include, str):
            raise TypeError(
                f"`include` must be a sequence of group names, got the string {self.include!r}; "
                f"write `include=({self.include!r},)`."
            )
        include = tuple(self.include)
        for group in include:
            check_choice(group, "include", CONDITION_GROUPS)
        if len(set(include)) != len(include):
            raise ValueError(f"`include` repeats a group: {list(include)}; list each group once.")
        if not include:
            raise ValueError(f"`include` is empty; choose at least one of {list(CONDITION_GROUPS)}.")
        if "types" in include and self.num_types < 1:
            raise ValueError(
                f"`num_types` must be >= 1 when 'types' is included, got {self.num_types}; "
                "drop 'types' from `include` for datasets without nucleus types."
            )
        if self.num_types < 0:
            raise ValueError(f"`num_types` must be >= 0, got {self.num_types}.")
        check_choice(self.hv_convention, "hv_convention", HV_CONVENTIONS)
        # Frozen dataclass: canonicalise through object.__setattr__ so equality ignores given order.
        object.__setattr__(self, "include", tuple(g for g in CONDITION_GROUPS if g in include))

    @property
    def names(self) -> tuple[str, ...]:
        """Channel names in stack order, e.g. ``('mask', 'boundary', 'hv_h', 'hv_v', 'type_1', ...)``."""
        names: list[str] = []
        for group in self.include:
            if group == "hv":
                names += ["hv_h", "hv_v"]
            elif group == "types":
                names += [f"type_{k}" for k in range(1, self.num_types + 1)]
            elif group == "colour":
                names += ["colour_r", "colour_g", "colour_b"]
            else:
                names.append(group)
        return tuple(names)

    @property
    def num_channels(self) -> int:
        """Number of channels C of the stack."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of channel ``name`` (e.g. ``"hv_h"``) in the stack.

        Raises:
            ValueError: if there is no such channel (the message lists the channels).
        """
        names = self.names
        if name not in names:
            raise ValueError(f"`name` {name!r} is not one of these condition channels: {list(names)}.")
        return names.index(name)

    def group_slice(self, group: str) -> slice:
        """The slice of the stack holding condition group ``group`` (e.g. ``"types"``).

        Raises:
            ValueError: if ``group`` is unknown or not included here.
        """
        check_choice(group, "group", CONDITION_GROUPS)
        if group not in self.include:
            raise ValueError(f"`group` {group!r} is not included; these channels hold {list(self.include)}.")
        start = 0
        for g in self.include:
            width = {"hv": 2, "types": self.num_types, "colour": 3}.get(g, 1)
            if g == group:
                return slice(start, start + width)
            start += width
        raise AssertionError("unreachable: group is in include")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (also lists ``channels`` for humans reading a saved config)."""
        return {
            "num_types": self.num_types,
            "include": list(self.include),
            "hv_convention": self.hv_convention,
            "channels": list(self.names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionChannels:
        """Rebuild the channels written by :meth:`to_dict`.

        Raises:
            TypeError: if ``data`` is not a mapping.
            ValueError: on unknown keys, or if a stored ``channels`` list disagrees with the
                rebuilt channels (a config edited by hand).
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"`data` must be a mapping from `ConditionChannels.to_dict()`, got {type(data).__name__}."
            )
        unknown = set(data) - {"num_types", "include", "hv_convention", "channels"}
        if unknown:
            raise ValueError(
                f"`data` has unknown keys {sorted(unknown)}; expected the output of `to_dict()`."
            )
        channels = cls(
            num_types=data.get("num_types", 4),
            include=tuple(data.get("include", CONDITION_GROUPS)),
            hv_convention=data.get("hv_convention", "monai"),
        )
        if "channels" in data and list(data["channels"]) != list(channels.names):
            raise ValueError(
                f"`data['channels']` {list(data['channels'])} does not match the channels it describes "
                f"{list(channels.names)}; the config was edited inconsistently."
            )
        return channels
