"""metadata_to_text and TextEmbeddingCache: BERT runs once per distinct string; the cache travels."""

from __future__ import annotations

import pytest
import torch

from synthaug.model import TextEmbeddingCache, metadata_to_text


def test_metadata_to_text_is_sorted_and_ignores_bookkeeping_keys():
    meta = {"tissue": "colon", "source": "consep", "assay": "H&E", "indication": "colorectal adenocarcinoma"}
    text = metadata_to_text(meta)
    assert text == "assay: H&E. indication: colorectal adenocarcinoma. tissue: colon."
    assert metadata_to_text(dict(reversed(list(meta.items())))) == text
    assert (
        metadata_to_text({"morphology_group": "3", "label": "tumour"})
        == "label: tumour. morphology group: 3."
    )
    assert metadata_to_text({"source": "x"}) == ""


def test_metadata_to_text_rejects_non_mapping():
    with pytest.raises(TypeError, match="`meta`"):
        metadata_to_text(["tissue", "colon"])


def test_cache_hits_do_not_rerun_bert(text_cache: TextEmbeddingCache):
    cache = text_cache
    embeds, mask = cache.encode(["tissue: kidney.", "tissue: breast."])
    calls = []
    hook = cache._encoder.register_forward_hook(lambda *_: calls.append(1))
    hits, misses = cache.hits, cache.misses
    again, again_mask = cache.encode(["tissue: breast.", "tissue: kidney.", "tissue: kidney."])
    assert calls == [], "BERT ran for strings already in the cache"
    assert cache.hits == hits + 3 and cache.misses == misses
    assert torch.equal(again[1], embeds[0]) and torch.equal(again_mask[0], mask[1])
    cache.encode(["tissue: lung."])
    assert len(calls) == 1 and cache.misses == misses + 1
    hook.remove()
    assert embeds.shape == (2, 16, 384) and mask.dtype == torch.bool
    # [CLS] + tokens + [SEP] are real, padding is not; different strings embed differently.
    assert mask[0, 0] and not mask[0, -1]
    assert not torch.allclose(embeds[0], embeds[1])


def test_saved_cache_loads_without_the_encoder(tmp_path, text_cache: TextEmbeddingCache):
    strings = ["assay: H&E. tissue: colon.", "label: tumour."]
    embeds, mask = text_cache.encode(strings)
    text_cache.save(tmp_path)
    loaded = TextEmbeddingCache.load(tmp_path, encoder_path=tmp_path / "no_such_encoder")
    got, got_mask = loaded.encode(strings)  # would fail if it tried to load the (bogus) encoder
    assert torch.equal(got, embeds) and torch.equal(got_mask, mask)
    assert loaded._encoder is None and loaded.hits == 2 and loaded.misses == 0


def test_cache_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="max_length"):
        TextEmbeddingCache(max_length=1)
    with pytest.raises(FileNotFoundError, match="text_embeddings"):
        TextEmbeddingCache.load(tmp_path)
    with pytest.raises(TypeError, match="sequence of strings"):
        TextEmbeddingCache().encode("tissue: colon.")
    with pytest.raises(ValueError, match="encoder_path"):
        TextEmbeddingCache(tmp_path).encode(["x"])
