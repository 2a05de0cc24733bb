"""synthaug.conditions: per-pixel conditions built from instance masks (NumPy + numba, no torch).

HV maps (MONAI- or HoVer-Net-exact), colour statistics and colour maps, nucleus type maps, and
``build_conditions``, which stacks them in the channel order a :class:`ConditionChannels` records.
"""

from synthaug.conditions.build import boundary_map, build_conditions
from synthaug.conditions.channels import CONDITION_GROUPS, ConditionChannels
from synthaug.conditions.colour import ColourStats, colour_stats, instance_colour_stats, paint_colour_map
from synthaug.conditions.hv import compute_hv_maps, compute_hv_maps_batch
from synthaug.conditions.types import (
    instance_type_votes,
    instance_types_from_type_map,
    instances_of_type,
    type_map_from_instances,
    type_one_hot,
)

__all__ = [
    "CONDITION_GROUPS",
    "ColourStats",
    "ConditionChannels",
    "boundary_map",
    "build_conditions",
    "colour_stats",
    "compute_hv_maps",
    "compute_hv_maps_batch",
    "instance_colour_stats",
    "instance_type_votes",
    "instance_types_from_type_map",
    "instances_of_type",
    "paint_colour_map",
    "type_map_from_instances",
    "type_one_hot",
]
