"""Sample record, dataset readers, tiling, splits and procedural layouts."""

from synthaug.data.record import NucleiDataset, Sample

__all__ = ["NucleiDataset", "Sample"]
