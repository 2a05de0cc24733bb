"""Figures: one outline palette for every stage, drawn without touching the caller's pyplot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from synthaug.viz import overlay_instances, type_colour


def _pair():
    image = np.full((16, 16, 3), 128, np.uint8)
    inst = np.zeros((16, 16), np.int32)
    inst[2:8, 2:8], inst[9:14, 9:14] = 1, 2
    types = np.where(inst == 1, 3, np.where(inst == 2, 2, 0)).astype(np.int32)
    return image, inst, types


def test_outlines_take_their_type_colour_and_leave_the_image_alone():
    image, inst, types = _pair()
    out = overlay_instances(image, inst, types)
    assert (image == 128).all(), "the input image was modified"
    red = (np.asarray(type_colour(3)) * 255).astype(np.uint8)
    assert (out[2, 2] == red).all() and (out[4, 4] == 128).all()  # outline coloured, interior kept
    assert (out[inst == 0] == 128).all()


def test_every_figure_writer_leaves_the_pyplot_backend_and_figures_alone(tmp_path):
    # In a fresh interpreter, as a notebook would be: pick a backend, draw everything, check it stayed.
    code = f"""
import json, matplotlib, numpy as np
matplotlib.use("svg")
import matplotlib.pyplot as plt
from synthaug.data import Sample
from synthaug.data.summary import plot_montage, plot_size_histogram
from synthaug.demo.report import save_loss_curves, save_score_bars
from synthaug.model._reporting import save_loss_curve, save_sample_grid
from synthaug.segment.train import loss_figure
from synthaug.viz import save_pair_grid
from pathlib import Path
out = Path({str(tmp_path)!r})
image = np.full((16, 16, 3), 128, np.uint8)
inst = np.zeros((16, 16), np.int32); inst[2:8, 2:8] = 1
types = (inst > 0).astype(np.int32) * 3
s = Sample(name="a", image=image, inst=inst, types=types, meta={{}}, group="g")
plot_montage([s], {{3: "epithelial"}}, out / "m.png")
plot_size_histogram({{"train": [s]}}, {{3: "epithelial"}}, out / "h.png")
save_pair_grid(out / "g.png", [image], [inst], [types])
save_loss_curves(out / "l.png", {{"run": [1.0, 0.5, 0.2] * 10}}, title="t")
save_score_bars(out / "b.png", {{"arm": {{"Dice": 0.5}}}}, title="t")
log = [json.dumps({{"step": i, "loss": 1 / (i + 1)}}) for i in range(30)]
(out / "loss.jsonl").write_text("\\n".join(log))
save_loss_curve(out / "loss.jsonl", out / "c.png")
save_sample_grid(out / "s.png", [image], [image], [inst], [types])
loss_figure([1.0, 0.5] * 10).savefig(out / "t.png")
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "0"]
    for name in ("m", "h", "g", "l", "b", "c", "s", "t"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
