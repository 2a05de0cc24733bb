"""The names a user types first are importable from ``synthaug`` itself, without loading diffusers."""

from __future__ import annotations

import subprocess
import sys

import synthaug


def test_every_advertised_name_resolves():
    for name in synthaug.__all__:
        assert getattr(synthaug, name) is not None, name


def test_importing_the_package_and_the_segmenter_does_not_load_diffusers():
    code = (
        "import sys, synthaug; synthaug.train_segmenter; synthaug.SyntheticAugment; "
        "print('diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
