"""Toy H&E renders: H&E-like colour structure, type-dependent darkness, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed, rgb_from_hed

from synthaug.data import Sample
from synthaug.data.layouts import generate_layout
from synthaug.data.toy import TOY_META, make_toy_samples, render_toy_tile


@pytest.fixture(scope="module")
def layout():
    return generate_layout(128, 128, density=0.25, seed=3)


def render(layout, **kwargs):
    return render_toy_tile(layout.inst, layout.types, layout.inst_types, **{"seed": 0} | kwargs)


def test_output_format_and_reproducibility(layout):
    image = render(layout)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert np.array_equal(image, render(layout))
    assert not np.array_equal(image, render(layout, seed=1))


def test_nuclei_are_haematoxylin_and_background_is_eosin(layout):
    image = render(layout)
    hed = rgb2hed(image)  # colour deconvolution with the standard H&E vectors
    nuclei, stroma = layout.inst > 0, layout.inst == 0
    assert hed[..., 0][nuclei].mean() > 2 * hed[..., 0][stroma].mean()
    assert image[nuclei].mean() < image[stroma].mean() - 40  # nuclei are clearly darker
    pink = image[stroma].mean(axis=0)
    assert pink[0] > pink[1] and pink[2] > pink[1]  # eosin absorbs green: magenta-pink
    purple = image[nuclei].mean(axis=0)
    assert purple[2] > purple[0]  # haematoxylin: blue-purple


def test_darkness_depends_on_type():
    inst = np.zeros((64, 64), np.int32)
    inst[10:30, 10:30], inst[34:54, 34:54] = 1, 2
    means = {}
    for t in (2, 3):  # inflammatory vs epithelial, same shape and place
        inst_types = {1: t, 2: t}
        image = render_toy_tile(inst, np.where(inst > 0, t, 0).astype(np.uint8), inst_types, seed=0)
        means[t] = image[inst > 0].mean()
    assert means[2] < means[3] - 10  # inflammatory nuclei are the darkest


def test_stain_argument(layout):
    default = render(layout, stain=rgb_from_hed)
    other = rgb_from_hed.copy()
    other[1] = [0.05, 0.6, 0.8]  # an eosin that absorbs blue: changes the stroma hue
    changed = render(layout, stain=other[:2])
    stroma = layout.inst == 0
    assert np.abs(default[stroma].mean(0) - changed[stroma].mean(0)).max() > 20
    with pytest.raises(ValueError, match="stain"):
        render(layout, stain=np.ones((4, 3)))


def test_bad_inputs_are_named(layout):
    with pytest.raises(ValueError, match="types"):
        render_toy_tile(layout.inst, layout.types[:10], layout.inst_types, seed=0)
    with pytest.raises(TypeError, match="inst"):
        render_toy_tile(layout.inst > 0, layout.types, layout.inst_types, seed=0)
    with pytest.raises(TypeError, match="inst_types"):
        render_toy_tile(layout.inst, layout.types, [1, 2], seed=0)


def test_empty_layout_renders_plain_stroma():
    image = render_toy_tile(np.zeros((32, 32), np.int32), np.zeros((32, 32), np.uint8), {}, seed=0)
    assert image.shape == (32, 32, 3) and image.mean() > 150


def test_make_toy_samples_are_valid_and_indexed_by_seed():
    samples = make_toy_samples(3, 48, 48, seed=5, density=0.3)
    assert len(samples) == 3 and all(isinstance(s, Sample) for s in samples)
    assert [s.name for s in samples] == ["toy_00000", "toy_00001", "toy_00002"]
    assert samples[0].meta == TOY_META  # says plainly that it is toy data
    again = make_toy_samples(2, 48, 48, seed=5, density=0.3)
    assert np.array_equal(again[1].image, samples[1].image) and np.array_equal(again[1].inst, samples[1].inst)
    with pytest.raises(ValueError, match="`n`"):
        make_toy_samples(-1)
