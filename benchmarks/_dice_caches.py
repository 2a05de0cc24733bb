"""The synthetic caches of ``dice_with_synthesis.py``: sampled from a shipped MSDM, training masks only.

Three caches, each resumable (``generate_to_cache(resume=True)`` continues a killed run and refuses a
store written with other settings):

  targeted100    masks from every training tile, epithelial share raised to ``share`` (rare arm)
  untargeted10   masks from the tiles the 10 % scarcity cut keeps, as they are
  targeted10     the same kept tiles, epithelial share raised (no other tile is seen)

How the share is raised (``--targeting``, ``TargetingPolicy.with_strategy``): ``"select"`` (default)
keeps the closest of 16 real crops unedited, ``"edit"`` copies and removes nuclei until the share is
met; ``synthaug.sampling.targeting`` says what each costs.

Every mask source is built with ``split=`` so a test mask cannot leak into a training cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RARE = "epithelial"


@dataclass(frozen=True)
class CacheSpec:
    """What one cache holds: whose masks, targeted or not."""

    name: str
    keep: str  # "100" (every training tile) or "10" (the scarcity cut)
    targeted: bool


CACHES = (
    CacheSpec("targeted100", "100", True),
    CacheSpec("untargeted10", "10", False),
    CacheSpec("targeted10", "10", True),
)


def sample_caches(
    splits: dict,
    names: set[str],
    work: Path,
    *,
    model: str,
    tile: int,
    num_samples: int,
    share: float,
    steps: int,
    targeting: str = "select",
    device: str = "cpu",
) -> dict[str, str]:
    """Sample (or finish) the caches ``names`` under ``work/caches``; returns every ``{name: url}``."""
    from synthaug.sampling.generate import generate_to_cache
    from synthaug.sampling.mask_sources import RealMaskSource
    from synthaug.sampling.pipeline import load_pipeline
    from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy

    pipeline = None
    urls = {}
    for spec in CACHES:
        url = str(work / "caches" / f"{spec.name}.zarr")
        urls[spec.name] = url
        split = splits[spec.keep]
        if spec.name not in names or _complete(url, num_samples):
            continue
        pipeline = pipeline or load_pipeline(model, device=device)
        source = RealMaskSource(split.train, size=(tile, tile), seed=0, split=split)
        if spec.targeted:
            policy = TargetingPolicy.with_strategy(RARE, share, targeting)  # the split's vocabulary
            source = TargetedMaskSource(source, policy, seed=0)
        print(f"cache {spec.name}: {num_samples} pairs of {tile}px from {len(split.train)} training patches")
        generate_to_cache(
            pipeline,
            source,
            url,
            num_samples=num_samples,
            seed=0,
            # One copy per step (no guidance): the setting the shipped model's fidelity was measured at.
            guidance={"mask": 1.0, "text": 1.0, "colour": 1.0},
            num_inference_steps=steps,
            resume=True,
            attrs={"benchmark": "dice_with_synthesis", "cache": spec.name, "keep": spec.keep},
        )
    return urls


def _complete(url: str, num_samples: int) -> bool:
    from synthaug.sampling.cache import SyntheticCache

    if not Path(url).exists():
        return False
    return len(SyntheticCache.open(url)) >= num_samples
