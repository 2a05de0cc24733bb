"""The reader interface and the registry readers join with ``@register_reader("name")``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, TypeVar

from tqdm.auto import tqdm

from synthaug.data.record import Sample
from synthaug.data.vocabulary import UNTYPED, TypeVocabulary

_READERS: dict[str, type[DatasetReader]] = {}
_R = TypeVar("_R", bound="type[DatasetReader]")

# Show a progress bar only when reading enough files for it to matter.
_PROGRESS_MIN_FILES = 50


class DatasetReader(ABC):
    """Reads one dataset, as its authors distribute it, into :class:`~synthaug.data.Sample` records.

    Subclasses set ``type_names`` (type id -> class name; 0 is background and never listed),
    optionally ``type_aliases`` (other names users may target a class by; both together are
    :attr:`vocabulary`, the one place a class name becomes an id), implement
    :meth:`detect`, :meth:`splits` and :meth:`load`, and are registered with
    :func:`register_reader`. Readers never touch the network.

    Args:
        root: the dataset folder.
        strict: passed to :func:`~synthaug.data.validate.build_sample`; if False, type-table entries
            for ids missing from a mask are dropped with a warning instead of raising.
        progress: show a tqdm bar when loading many files.

    Raises:
        ValueError: if ``root`` is not a folder this reader can read.

    Example:
        >>> @register_reader("mylab")                                   # doctest: +SKIP
        ... class MyLabReader(DatasetReader):
        ...     type_names = {1: "tumour", 2: "lymphocyte"}
        ...     layout_hint = "slides/*.png with masks/*.npy"
        ...     @classmethod
        ...     def detect(cls, root): return (root / "slides").is_dir()
        ...     def splits(self): return ["all"]
        ...     def load(self, split): ...  # build each Sample with build_sample(...)
    """

    name: ClassVar[str] = ""
    # a class attribute for fixed vocabularies; FolderReader sets it per instance from classes.json
    type_names: dict[int, str] = {}
    type_aliases: ClassVar[dict[str, int]] = {}

    @property
    def has_types(self) -> bool:
        """False for a dataset whose masks carry no nucleus types (its one class is ``UNTYPED``)."""
        return dict(self.type_names) != UNTYPED.names

    @property
    def vocabulary(self) -> TypeVocabulary:
        """This dataset's types and aliases: ``reader.vocabulary.resolve("columnar")`` is an id."""
        return TypeVocabulary(self.type_names, self.type_aliases)

    #: True for catch-all readers that :func:`open_dataset` tries only when no specific one matches.
    generic: ClassVar[bool] = False
    #: What :meth:`detect` looks for, quoted when auto-detection fails.
    layout_hint: ClassVar[str] = ""

    def __init__(self, root: str | Path, *, strict: bool = True, progress: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"`root` must be an existing folder, got {str(root)!r}.")
        if not self.detect(self.root):
            raise ValueError(
                f"{self.root} does not look like a {self.name!r} dataset: expected {self.layout_hint}."
            )
        self.strict = strict
        self.progress = progress

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """Return True if ``root`` has this reader's layout (cheap: file names only, no decoding)."""

    @abstractmethod
    def splits(self) -> list[str]:
        """The split names this copy of the dataset holds, e.g. ``["train", "test"]``."""

    @abstractmethod
    def load(self, split: str) -> list[Sample]:
        """Read every sample of ``split``.

        Raises:
            ValueError: for an unknown split, or naming the file when a file is malformed.
        """

    def load_tiles(self, split: str) -> list[Sample]:
        """Every whole tile of ``split``, for readers whose samples are patches cut from tiles.

        A dataset stored as whole images knows no tiles to reassemble; readers of patch layouts
        (``CoNSePReader``) override this.

        Raises:
            ValueError: always here, naming the fix.
        """
        raise ValueError(
            f"the {type(self).__name__} of {self.root} knows no tiles to stitch its samples into; "
            "score its samples as they are."
        )

    def _check_split(self, split: str) -> None:
        valid = self.splits()
        if split not in valid:
            raise ValueError(f"unknown split {split!r} for {self.root}; this dataset has splits {valid}.")

    def _progress(self, items: Iterable, split: str, total: int) -> Iterable:
        disable = not self.progress or total < _PROGRESS_MIN_FILES
        return tqdm(items, total=total, desc=f"{self.name}:{split}", unit="file", disable=disable)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"


def register_reader(name: str) -> Callable[[_R], _R]:
    """Class decorator adding a :class:`DatasetReader` subclass to the registry under ``name``.

    Raises:
        ValueError: if ``name`` is already taken.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("`name` must be a non-empty string.")

    def decorator(cls: _R) -> _R:
        if name in _READERS and _READERS[name] is not cls:
            raise ValueError(f"a reader named {name!r} is already registered ({_READERS[name].__name__}).")
        if not (isinstance(cls, type) and issubclass(cls, DatasetReader)):
            raise TypeError(f"@register_reader({name!r}) must decorate a DatasetReader subclass.")
        cls.name = name
        _READERS[name] = cls
        return cls

    return decorator


def available_readers() -> list[str]:
    """Names of the registered readers, sorted."""
    return sorted(_READERS)


def get_reader(name: str) -> type[DatasetReader]:
    """The reader class registered under ``name``.

    Raises:
        ValueError: listing the registered names when ``name`` is unknown.
    """
    if name not in _READERS:
        raise ValueError(f"unknown reader {name!r}; available readers: {available_readers()}.")
    return _READERS[name]


def open_dataset(path: str | Path, reader: str | None = None, **kwargs) -> DatasetReader:
    """Open a dataset folder with the named reader, or with the one whose layout it matches.

    Args:
        path: the dataset folder.
        reader: a registered reader name; ``None`` auto-detects.
        **kwargs: passed to the reader (``strict``, ``progress``).

    Returns:
        The reader instance.

    Raises:
        ValueError: if ``path`` is not a folder, no reader matches (listing what each expects) or
            several specific readers match (pass ``reader=`` to choose).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"`path` must be an existing dataset folder, got {str(path)!r}.")
    if reader is not None:
        return get_reader(reader)(root, **kwargs)
    specific = [cls for cls in _READERS.values() if not cls.generic and cls.detect(root)]
    if len(specific) > 1:
        names = [cls.name for cls in specific]
        raise ValueError(f"{root} matches several readers {names}; pass `reader=` to choose one.")
    if not specific:
        specific = [cls for cls in _READERS.values() if cls.generic and cls.detect(root)]
    if not specific:
        expected = "; ".join(f"{n}: {c.layout_hint}" for n, c in sorted(_READERS.items()))
        raise ValueError(f"no reader recognises {root}. Expected layouts - {expected}.")
    return specific[0](root, **kwargs)
