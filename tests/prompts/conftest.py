"""Toy tiles with two obvious morphologies, and a tiny stand-in for the frozen image encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import disk, ellipse

SIZE = 32


class ColourStatsEncoder(torch.nn.Module):
    """A real (if tiny) frozen encoder: per-channel mean, std and 4x4-pooled colour, 54-d.

    It keeps the tests fast; the default EfficientNet-Lite0 is exercised separately.
    """

    display_name = "colour-stats"
    num_features = 6 + 3 * 16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        return torch.cat([images.mean((2, 3)), images.std((2, 3)), pooled], dim=1)


def _tile(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``"purple"``: dark stroma, many small round nuclei; ``"pink"``: pale, few large elongated ones."""
    inst = np.zeros((SIZE, SIZE), np.int32)
    if kind == "purple":
        background, nucleus = (150, 90, 170), (60, 30, 110)
        centres = [(r, c) for r in range(4, SIZE, 8) for c in range(4, SIZE, 8)]
        shapes = [disk(centre, 2.5 + rng.uniform(0, 0.5), shape=inst.shape) for centre in centres]
    else:
        background, nucleus = (240, 190, 215), (200, 120, 170)
        centres = [(9, 10), (22, 21)]
        shapes = [
            ellipse(*centre, 3 + rng.uniform(0, 0.5), 8, rotation=rng.uniform(0, np.pi), shape=inst.shape)
            for centre in centres
        ]
    image = np.empty((SIZE, SIZE, 3), np.float64)
    image[:] = background
    for label, (rows, cols) in enumerate(shapes, start=1):
        inst[rows, cols] = label
        image[rows, cols] = nucleus
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), inst


@pytest.fixture(scope="session")
def toy_tiles() -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """12 purple then 12 pink tiles, their instance masks and their kind."""
    rng = np.random.default_rng(0)
    kinds = ["purple"] * 12 + ["pink"] * 12
    pairs = [_tile(rng, kind) for kind in kinds]
    return [p[0] for p in pairs], [p[1] for p in pairs], kinds


@pytest.fixture
def encoder() -> ColourStatsEncoder:
    return ColourStatsEncoder()
