"""Kernel == reference checks meant to run with ``NUMBA_DISABLE_JIT=1`` (kernels as plain Python).

``test_kernels_without_jit`` runs this module in a subprocess so the kernel source lines execute
as Python; for coverage of the kernels run
``NUMBA_DISABLE_JIT=1 coverage run -m tests.conditions.nojit_check``. It imports no torch, so the
subprocess starts fast.
"""

from __future__ import annotations

import os

import numpy as np
from skimage.segmentation import find_boundaries

from synthaug.conditions import (
    ConditionChannels,
    boundary_map,
    build_conditions,
    compute_hv_maps,
    compute_hv_maps_batch,
    paint_colour_map,
    type_map_from_instances,
    type_one_hot,
)


def main() -> None:
    if os.environ.get("NUMBA_DISABLE_JIT") != "1":
        raise SystemExit("run with NUMBA_DISABLE_JIT=1")
    rng = np.random.default_rng(0)
    insts = rng.integers(0, 6, size=(3, 9, 11)).astype(np.int32)
    insts[1] = 0
    insts[2, 0, 0] = 10_000  # sparse labels: the compacting path
    for convention in ("monai", "hovernet"):
        batch = compute_hv_maps_batch(insts, convention=convention)
        for inst, hv in zip(insts, batch):
            reference = compute_hv_maps(inst, convention=convention, backend="reference")
            assert np.array_equal(hv, reference), convention
            assert np.array_equal(
                compute_hv_maps(inst, convention=convention, min_area=3),
                compute_hv_maps(inst, convention=convention, min_area=3, backend="reference"),
            )
    for inst in insts:
        assert np.array_equal(boundary_map(inst), find_boundaries(inst, mode="inner").astype(np.float32))
    inst = insts[0]
    table = {int(i): int(i) % 4 + 1 for i in np.unique(inst) if i}
    colour = np.array([0.2, 0.3, 0.4, 0.9, 0.8, 0.7])
    cond = build_conditions(inst, inst_types=table, colour=colour, channels=ConditionChannels())
    expected = np.concatenate(
        [
            (inst != 0)[None].astype(np.float32),
            boundary_map(inst, backend="reference")[None],
            compute_hv_maps(inst, backend="reference"),
            type_one_hot(type_map_from_instances(inst, table), 4),
            paint_colour_map(inst, colour[:3], colour[3:]),
        ]
    )
    assert np.array_equal(cond, expected)
    print("nojit kernels == references: ok")


if __name__ == "__main__":
    main()
