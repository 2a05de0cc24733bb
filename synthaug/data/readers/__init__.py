"""Dataset readers, one module per format, registered by name with ``@register_reader``.

Importing this package registers every built-in reader, so ``open_dataset`` can auto-detect them.
"""

from synthaug.data.readers.base import (
    DatasetReader,
    available_readers,
    get_reader,
    open_dataset,
    register_reader,
)
from synthaug.data.readers.consep import CoNSePReader
from synthaug.data.readers.folder import FolderReader
from synthaug.data.readers.lizard import CoNICReader, LizardReader
from synthaug.data.readers.monuseg import MoNuSegReader, polygons_to_instances
from synthaug.data.readers.pannuke import PanNukeReader
from synthaug.data.readers.pcam import PCamReader

__all__ = [
    "CoNICReader",
    "CoNSePReader",
    "DatasetReader",
    "FolderReader",
    "LizardReader",
    "MoNuSegReader",
    "PCamReader",
    "PanNukeReader",
    "available_readers",
    "get_reader",
    "open_dataset",
    "polygons_to_instances",
    "register_reader",
]
