"""Sample record, dataset readers, tiling, splits and procedural layouts."""

from synthaug.data.layouts import generate_layout
from synthaug.data.readers import (
    DatasetReader,
    available_readers,
    get_reader,
    open_dataset,
    register_reader,
)
from synthaug.data.record import NucleiDataset, Sample
from synthaug.data.splits import (
    BenchmarkSplit,
    count_instances,
    sample_fingerprint,
    scarcity_scenario,
    split_by_group,
)
from synthaug.data.stats import group_colour_stats
from synthaug.data.tiling import crop_sample, tile_positions, tile_sample, tile_samples
from synthaug.data.toy import render_toy_tile
from synthaug.data.validate import build_sample, compact_instances
from synthaug.data.vocabulary import CONSEP_TYPES, UNTYPED, TypeVocabulary

__all__ = [
    "CONSEP_TYPES",
    "UNTYPED",
    "BenchmarkSplit",
    "DatasetReader",
    "NucleiDataset",
    "Sample",
    "available_readers",
    "build_sample",
    "compact_instances",
    "count_instances",
    "crop_sample",
    "generate_layout",
    "get_reader",
    "group_colour_stats",
    "open_dataset",
    "register_reader",
    "render_toy_tile",
    "sample_fingerprint",
    "scarcity_scenario",
    "split_by_group",
    "tile_positions",
    "tile_sample",
    "tile_samples",
    "TypeVocabulary",
]
