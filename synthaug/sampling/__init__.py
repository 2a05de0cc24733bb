"""synthaug.sampling: the MSDM pipeline, mask sources and targeting, and the zarr ``SyntheticCache``.

Imported here: the cache (zarr only) and the mask sources / targeting (NumPy, SciPy, scikit-image),
none of which needs diffusers, so training a segmenter from a finished cache never loads the
diffusion stack. The sampler lives in ``synthaug.sampling.pipeline`` (``MSDMPipeline``, also
``synthaug.MSDMPipeline``) and the cache-filling driver in ``synthaug.sampling.generate``
(``generate_to_cache``).
"""

from synthaug.sampling.cache import CacheIntegrityError, SyntheticCache
from synthaug.sampling.claims import ClaimConflictError
from synthaug.sampling.mask_sources import (
    CropEdit,
    DihedralEdit,
    ElasticEdit,
    LayoutMaskSource,
    MaskRecord,
    MaskSource,
    RealMaskSource,
    ReplaceInstancesEdit,
)
from synthaug.sampling.targeting import TargetedMaskSource, TargetingPolicy

__all__ = [
    "CacheIntegrityError",
    "ClaimConflictError",
    "DihedralEdit",
    "ElasticEdit",
    "LayoutMaskSource",
    "MaskRecord",
    "MaskSource",
    "CropEdit",
    "RealMaskSource",
    "ReplaceInstancesEdit",
    "SyntheticCache",
    "TargetedMaskSource",
    "TargetingPolicy",
]
