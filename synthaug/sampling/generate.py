"""Fill a ``SyntheticCache`` from a mask source with an ``MSDMPipeline``, resumably and across ranks.

Sample ``i`` always takes its layout from ``mask_source[i]`` and its noise from a generator seeded with
``(seed, i)``, so what lands in slot ``i`` depends neither on the batch size nor on the rank that
drew it. Under ``torchrun`` / ``accelerate launch`` each rank fills the contiguous slice
``[rank * N // world, (rank + 1) * N // world)`` of ONE store (disjoint chunks, no locks) and
commits to its own writer record; rank 0 merges the records after a barrier. Each rank claims its
slots first (``synthaug.sampling.claims``), so another run on the same store is refused. A killed run is
resumed by calling again with the same arguments: committed slots are skipped, half-written ones
are overwritten with identical bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from synthaug._validation import check_int
from synthaug._version import __version__
from synthaug.model import metadata_to_text
from synthaug.sampling.cache import Range, SyntheticCache, merge_ranges
from synthaug.sampling.pipeline import (
    DEFAULT_GUIDANCE,
    MSDMPipeline,
    check_guidance,
    check_num_inference_steps,
)
from synthaug.sampling.targeting import TargetingPolicy

# A `synthaug.sampling.MaskSource`, any callable `index -> layout`, or a list of layouts.
LayoutSource = Sequence[Any] | Callable[[int], Any]


def sample_seed(seed: int, index: int) -> int:
    """The 64-bit seed of sample ``index`` of a run seeded with ``seed`` (independent streams per index)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0])


def model_hash(model: torch.nn.Module) -> str:
    """``"sha256:<hex>"`` over the model's parameter names and bytes: the checkpoint a cache came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        # torch.compile wraps the model as `_orig_mod`: the same weights must give the same hash.
        digest.update(name.removeprefix("_orig_mod.").encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


def _layout_at(source: LayoutSource, index: int) -> dict[str, Any]:
    """Layout ``index`` of a source as ``{inst, types, inst_types, meta, colour}``.

    A source is a sequence (indexed modulo its length) or a callable ``index -> layout``; a layout is
    a ``Layout``/``Sample``-like object (``.inst .types .inst_types .meta``, optional ``.colour`` or
    ``.image`` to measure colour from) or a tuple ``(inst, types, inst_types, meta[, colour])``.
    """
    if isinstance(source, Sequence):  # a plain list of layouts: cycle through it
        if not len(source):
            raise ValueError("`mask_source` is an empty sequence; pass at least one layout or a MaskSource.")
        item = source[index % len(source)]
    else:  # a MaskSource (endless, item i depends on (seed, i)) or a callable
        item = source[index] if hasattr(source, "__getitem__") else source(index)
    if isinstance(item, tuple):
        inst, types, inst_types, meta, *rest = item
        colour = rest[0] if rest else None
    else:
        inst, types, inst_types, meta = item.inst, item.types, item.inst_types, item.meta
        colour = getattr(item, "colour", None)
        if colour is None and getattr(item, "image", None) is not None:
            from synthaug.conditions import colour_stats

            colour = colour_stats(item.image, inst).as_vector()
    colour = None if colour is None else np.asarray(colour, dtype=np.float32)
    inst, types, inst_types = np.asarray(inst), np.asarray(types), dict(inst_types or {})
    if inst_types:
        # The model is conditioned on the type map and the cache stores it: a table that says
        # otherwise would be recorded as truth while the image shows something else.
        from synthaug.conditions import instance_types_from_type_map

        voted = instance_types_from_type_map(inst, types)
        wrong = {k: (int(t), voted[k]) for k, t in inst_types.items() if k in voted and voted[k] != int(t)}
        if wrong:
            k, (given, painted) = next(iter(wrong.items()))
            raise ValueError(
                f"mask source item {index}: `inst_types` disagree with the type map for {len(wrong)} "
                f"instance(s), e.g. instance {k} is type {given} in `inst_types` but {painted} in `types`; "
                "rebuild the type map with synthaug.conditions.type_map_from_instances."
            )
    return {
        "inst": inst,
        "types": types,
        "inst_types": inst_types,
        "meta": dict(meta or {}),
        "colour": colour,
    }


def _source_type_names(source: LayoutSource, num_types: int) -> dict[int, str] | None:
    """The class names the store header records: the mask source's vocabulary (``None``: unknown)."""
    vocabulary = getattr(source, "vocabulary", None)
    if vocabulary is None or not len(vocabulary):
        return None
    if vocabulary.num_types > num_types:
        raise ValueError(
            f"`mask_source` has types {vocabulary.describe()} but the model paints {num_types}; "
            "sample with a model trained on this dataset's types."
        )
    return dict(vocabulary.names)


def _distributed() -> tuple[int, int, bool]:
    """``(rank, world_size, initialised_here)``; joins a gloo group from torchrun-style env when needed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        # gloo works on every device; the group only carries barriers, never tensors of images.
        dist.init_process_group("gloo")
        return dist.get_rank(), world, True
    return 0, 1, False


def _batches(todo: list[Range], batch_size: int) -> Iterator[Range]:
    """Contiguous ``[start, stop)`` batches of at most ``batch_size`` covering ``todo``."""
    for start, stop in todo:
        for s in range(start, stop, batch_size):
            yield s, min(s + batch_size, stop)


def _missing(lo: int, hi: int, done: list[Range]) -> list[Range]:
    todo, cursor = [], lo
    for start, stop in done:
        if stop <= cursor or start >= hi:
            continue
        if start > cursor:
            todo.append((cursor, start))
        cursor = max(cursor, stop)
    if cursor < hi:
        todo.append((cursor, hi))
    return todo


def _sample(pipeline, layouts, indices, *, seed, colour, guidance, num_inference_steps) -> np.ndarray:
    for lay in layouts:
        if lay["colour"] is None and colour is not None:
            lay["colour"] = np.asarray(colour, dtype=np.float32)
    return pipeline(
        [lay["inst"] for lay in layouts],
        type_map=[lay["types"] for lay in layouts],
        inst_types=[lay["inst_types"] for lay in layouts],
        meta=[lay["meta"] for lay in layouts],
        colour=[lay["colour"] for lay in layouts] if layouts[0]["colour"] is not None else None,
        guidance=guidance,
        num_inference_steps=num_inference_steps,
        generator=[torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices],
    ).images


def _sample_meta(record: dict[str, Any], seed: int, index: int, layout: dict[str, Any]) -> dict[str, Any]:
    colour = layout["colour"]
    return {
        **record,
        "index": index,
        "seed": [seed, index],
        "text": metadata_to_text(layout["meta"]),
        "source_meta": layout["meta"],
        "colour": None if colour is None else [round(float(c), 6) for c in colour],
    }


def _store(cache: SyntheticCache, start: int, images, layouts, metas, writer: str | None) -> None:
    stop = start + len(layouts)
    cache.write(
        start,
        image=images,
        inst=np.stack([lay["inst"] for lay in layouts]),
        type=np.stack([lay["types"] for lay in layouts]),
        meta=metas,
    )
    cache.commit(start, stop, writer=writer)


def _check_same_run(cache: SyntheticCache, url: str, wanted: Mapping[str, Any]) -> None:
    """Refuse to extend a store whose header describes another run (a store is one run).

    Every setting that changes the samples is in the header (``attrs["run"]``: seed, scheduler, steps,
    guidance, target, model hash; and the caller's attrs such as the mask source); only the requested
    ``num_samples`` may grow on a resume.
    """
    import json

    wanted = json.loads(json.dumps(dict(wanted)))  # compare as stored (tuples become lists)
    stored = cache.attrs
    differing = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key), wanted.get(key)
        if key == "run" and isinstance(old, Mapping) and isinstance(new, Mapping):
            old = {k: v for k, v in old.items() if k != "num_samples"}
            new = {k: v for k, v in new.items() if k != "num_samples"}
            differing += [
                f"{k} (store: {old.get(k)!r}, now: {new.get(k)!r})"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
        elif old != new:
            differing.append(f"{key} (store: {old!r}, now: {new!r})")
    if differing:
        raise ValueError(
            f"`cache_url` {url!r} holds another run; these settings differ: {'; '.join(differing)}. "
            "Resume with the store's settings, or write to a new store."
        )


def _prepare_store(
    url: str, rank: int, world: int, *, num_samples: int, resume: bool, model_hash: str, **create: Any
) -> SyntheticCache:
    """Rank 0 creates (or checks) the store and sizes it for ``num_samples``; the others then open it."""
    failure: Exception | None = None
    if rank == 0:
        try:
            cache = SyntheticCache.create(url, model_hash=model_hash, exist_ok=True, **create)
            if not resume and cache.committed_ranges():
                raise ValueError(
                    f"`cache_url` {url!r} already holds {len(cache)} samples; pass resume=True to "
                    "continue it or choose a new store."
                )
            _check_same_run(cache, url, create.get("attrs") or {})
            # Resizing rewrites array metadata: do it once, before any other rank writes.
            cache.reserve(num_samples)
        except (ValueError, TypeError) as err:
            failure = err
    if world > 1:
        # Doubles as the barrier; tells the other ranks to stop rather than wait forever.
        failed = torch.tensor([failure is not None], dtype=torch.int32)
        dist.all_reduce(failed)
        if failed.item() and failure is None:
            raise ValueError(f"rank 0 could not prepare the store {url!r}; see its error.")
    if failure is not None:
        raise failure
    if rank != 0:
        cache = SyntheticCache.open(
            url, mode="a", model_hash=model_hash, storage_options=create.get("storage_options")
        )
    return cache


def generate_to_cache(
    pipeline: MSDMPipeline,
    mask_source: LayoutSource,
    cache_url: str,
    *,
    num_samples: int,
    batch_size: int = 8,
    seed: int = 0,
    guidance: Mapping[str, float] | None = None,
    num_inference_steps: int = 15,
    colour: np.ndarray | None = None,
    resume: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> SyntheticCache:
    """Generate ``num_samples`` pairs into the cache at ``cache_url``.

    Args:
        pipeline: the sampler (its scheduler decides the solver).
        mask_source: a sequence of layouts (indexed modulo its length) or a callable ``i -> layout``;
            see ``_layout_at`` for the accepted layout forms. A ``TargetedMaskSource``'s request
            (``policy.describe()``) is recorded in the header and in every sample's meta as ``target``.
        cache_url: local path or fsspec URL of the store (created when absent).
        num_samples: total pairs in the store when done (over all ranks).
        batch_size: pairs per pipeline call and per commit.
        seed: run seed; sample ``i`` uses ``sample_seed(seed, i)``.
        guidance: per-modality guidance weights (default ``DEFAULT_GUIDANCE``).
        num_inference_steps: scheduler steps.
        colour: ``(6,)`` fg/bg colour used for layouts that carry none (``None``: colour dropped).
        resume: continue an existing store; ``False`` refuses a store that already has samples.
        storage_options: fsspec options for URLs.
        attrs: extra JSON attributes for the store header.
        progress: show a tqdm bar (pairs/s).

    Returns:
        The cache, reopened read-only with every committed sample visible.

    Raises:
        ValueError: invalid arguments, a non-resumable existing store, or an incompatible store.
    """
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        check_int(value, name, minimum=1)
    check_int(seed, "seed", minimum=0)
    guidance = dict(DEFAULT_GUIDANCE if guidance is None else guidance)
    check_guidance(guidance)  # before the store exists: a bad weight must not leave an empty store
    check_num_inference_steps(num_inference_steps)
    rank, world, initialised_here = _distributed()
    digest = model_hash(pipeline.model)
    first = _layout_at(mask_source, 0)
    height, width = first["inst"].shape
    type_names = _source_type_names(mask_source, pipeline.model.condition_channels.num_types)
    # The targeting request is read off the source (a TargetedMaskSource's policy), so the record
    # kept with every sample cannot disagree with the masks it describes.
    targeting = getattr(mask_source, "policy", None)
    record = {
        "guidance": guidance,
        "scheduler": type(pipeline.scheduler).__name__,
        "steps": num_inference_steps,
        "model_hash": digest,
        "synthaug_version": __version__,
        "target": targeting.describe() if isinstance(targeting, TargetingPolicy) else None,
    }
    header_attrs = {**dict(attrs or {}), "run": {**record, "seed": seed, "num_samples": num_samples}}
    cache = None
    try:
        cache = _prepare_store(
            cache_url,
            rank,
            world,
            height=height,
            width=width,
            num_types=pipeline.model.condition_channels.num_types,
            type_names=type_names,
            num_samples=num_samples,
            resume=resume,
            attrs=header_attrs,
            model_hash=digest,
            storage_options=storage_options,
        )
        lo, hi = rank * num_samples // world, (rank + 1) * num_samples // world
        todo = _missing(lo, hi, cache.committed_ranges())
        if todo:
            # Claim before writing: a second run on this store (started at the same time, or a
            # resume while this one works) is refused here instead of interleaving its samples.
            cache.claim(todo)
            # Two runs that created the store at the same instant: the header is the last writer's.
            stored = SyntheticCache.open(cache_url, storage_options=storage_options)
            _check_same_run(stored, cache_url, header_attrs)
            todo = _missing(lo, hi, cache.committed_ranges())  # what the claim's previous holder finished
        writer = None if world == 1 else f"rank-{rank}"
        total = sum(b - a for a, b in todo)
        bar = tqdm(total=total, unit="pair", desc=f"sampling (rank {rank})", disable=not progress)
        # One background writer: batch k is compressed and committed while batch k+1 is sampled,
        # so the store stays off the critical path; commits still land in order.
        with ThreadPoolExecutor(max_workers=1) as writer_thread:
            pending: Future | None = None
            for start, stop in _batches(todo, batch_size):
                layouts = [_layout_at(mask_source, i) for i in range(start, stop)]
                images = _sample(
                    pipeline,
                    layouts,
                    range(start, stop),
                    seed=seed,
                    colour=colour,
                    guidance=guidance,
                    num_inference_steps=num_inference_steps,
                )
                metas = [_sample_meta(record, seed, i, lay) for i, lay in zip(range(start, stop), layouts)]
                if pending is not None:
                    pending.result()  # surfaces write errors; bounds memory to one batch in flight
                pending = writer_thread.submit(_store, cache, start, images, layouts, metas, writer)
                pending.add_done_callback(lambda _, n=stop - start: bar.update(n))
            if pending is not None:
                pending.result()
        bar.close()
        if world > 1:
            dist.barrier()
            if rank == 0:
                cache.consolidate()
            dist.barrier()
    finally:
        if cache is not None:
            cache.release()
        if initialised_here:
            dist.destroy_process_group()
    return SyntheticCache.open(cache_url, model_hash=digest, storage_options=storage_options)


def consolidate(cache_url: str, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """Merge the per-rank commit records of a store (after a multi-rank run that could not finish it).

    Returns:
        The number of samples visible afterwards.
    """
    cache = SyntheticCache.open(cache_url, mode="a", storage_options=storage_options)
    return cache.consolidate()


__all__ = ["consolidate", "generate_to_cache", "merge_ranges", "model_hash", "sample_seed"]
