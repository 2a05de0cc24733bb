"""An independent, per-instance statement of HoVer-Net's HV target, the oracle for ``convention="hovernet"``.

Definition (HoVer-Net, Graham et al. 2019; ``gen_instance_hv_map`` in vqdang/hover_net): each
instance is cut out with its bounding box grown by 2 px; inside that crop the centre of mass is
rounded half up to a pixel, and a pixel's offset is its 1-based crop coordinate minus that rounded
centre (so the zero sits one pixel before the rounded centre). Negative offsets are divided by the
largest negative magnitude and positive ones by the largest positive offset, in float32.
Instances with fewer than ``min_size`` pixels are left at 0. The crop never leaves the image here
(as if the mask were padded, which HoVer-Net's patch extraction guarantees).

Written from the definition, one instance at a time with plain NumPy, deliberately unlike both the
numba kernel and the vectorised reference it checks.
"""

from __future__ import annotations

import numpy as np


def _offsets(coords: np.ndarray) -> np.ndarray:
    """HoVer-Net offsets of one instance along one axis, normalised to [-1, 1] in float32."""
    origin = coords.min() - 2  # the crop starts 2 px before the bounding box
    centre_of_mass = float(np.mean(coords - origin))  # in crop coordinates
    rounded = int(centre_of_mass + 0.5)
    offsets = ((coords - origin + 1) - rounded).astype(np.float32)  # 1-based crop positions
    negative, positive = offsets < 0, offsets > 0
    if negative.any():
        offsets[negative] /= np.float32(-offsets[negative].min())
    if positive.any():
        offsets[positive] /= np.float32(offsets[positive].max())
    return offsets


def gen_instance_hv_map(inst: np.ndarray, min_size: int = 30) -> np.ndarray:
    """HoVer-Net HV target of ``inst`` as ``(2, H, W)`` float32, channels ``[h (x), v (y)]``."""
    hv = np.zeros((2, *inst.shape), np.float32)
    for label in np.unique(inst):
        if label == 0:
            continue
        rows, cols = np.nonzero(inst == label)
        if rows.size < min_size:
            continue
        hv[0, rows, cols] = _offsets(cols)
        hv[1, rows, cols] = _offsets(rows)
    return hv
