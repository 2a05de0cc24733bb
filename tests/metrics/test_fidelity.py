"""Fidelity metrics against known values: self-distance ~0, shifts grow, Wasserstein closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from scipy.special import gammaln

from synthaug.metrics.features import extract_features, load_feature_extractor
from synthaug.metrics.fidelity import (
    fidelity_from_features,
    fidelity_report,
    frechet_distance,
    groups_from_labels,
    kernel_distance,
    manifold_metrics,
    metric_name,
    sliced_wasserstein,
)


@pytest.fixture(scope="module")
def gaussians() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((400, 8)), rng.standard_normal((400, 8))


def test_frechet_self_zero_and_grows_with_shift(gaussians):
    a, b = gaussians
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # A translated copy has the same covariance: the distance is exactly ||shift||^2 = 8 * shift^2.
    assert frechet_distance(a, a + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)
    # An independent sample of the same law is close; shifting it moves it away.
    same_law = frechet_distance(a, b)
    assert same_law < 1.0 < frechet_distance(a, b + 0.5) < frechet_distance(a, b + 2.0)


def test_kernel_distance_self_small_shift_large_and_seeded(gaussians):
    a, b = gaussians
    same_mean, same_std = kernel_distance(a, b, subsets=20)
    shifted, _ = kernel_distance(a, b + 1.0, subsets=20)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted > 10 * abs(same_mean)
    assert kernel_distance(a, b, subsets=5, seed=3) == kernel_distance(a, b, subsets=5, seed=3)


@pytest.mark.parametrize("mu", [0.0, 0.7, -2.5])
def test_wasserstein_1d_gaussians_matches_closed_form(mu):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20000, 1)), rng.standard_normal((20000, 1)) + mu
    # W1(N(0,1), N(mu,1)) = |mu|; 1-D "slices" are exact.
    assert sliced_wasserstein(x, y, num_projections=4) == pytest.approx(abs(mu), abs=0.03)


def test_sliced_wasserstein_matches_closed_form_in_d_dimensions():
    # A mean shift mu projected on a uniform unit direction theta:
    # E|<mu, theta>| = |mu| G(D/2) / (sqrt(pi) G((D+1)/2)).
    d, shift = 6, 1.5
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, d))
    y = rng.standard_normal((3000, d)) + shift / np.sqrt(d)
    expected = shift * np.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / np.sqrt(np.pi)
    assert sliced_wasserstein(x, y, num_projections=500) == pytest.approx(expected, rel=0.1)
    assert sliced_wasserstein(x, y, seed=4) == sliced_wasserstein(x, y, seed=4)


def test_manifold_metrics_same_vs_disjoint(gaussians):
    a, b = gaussians
    same = manifold_metrics(a, b, k=5)
    assert min(same["precision"], same["recall"], same["coverage"]) > 0.6
    assert same["density"] == pytest.approx(1.0, abs=0.3)  # Naeem: ~1 for identical distributions
    apart = manifold_metrics(a, b + 20.0, k=5)
    assert apart == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # Mode collapse: synthetic points all near one real point keep precision but lose coverage.
    collapsed = manifold_metrics(a, a[:1] + 0.01 * b[:50], k=5)
    assert collapsed["precision"] == 1.0 and collapsed["coverage"] < 0.05


def test_report_names_encoder_in_every_metric_and_groups(gaussians):
    a, b = gaussians
    groups = groups_from_labels(["colon"] * 200 + ["breast"] * 200, ["colon"] * 400, prefix="tissue=")
    report = fidelity_from_features(a, b, encoder="EfficientNet-Lite0", groups=groups)
    metric_keys = [k for k in report if k not in ("encoder", "num_real", "num_synthetic", "groups")]
    assert "FID" not in report and "FID (EfficientNet-Lite0 features)" in report
    assert len(metric_keys) == 8 and all("EfficientNet-Lite0 features" in k for k in metric_keys)
    assert report["groups"]["tissue=colon"]["num_real"] == 200
    assert report["groups"]["tissue=breast"]["num_synthetic"] == 0
    assert metric_name("FID", "Inception-v3 (FID, 2015-12-05)") == "FID"


def _crops(image: np.ndarray, n: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    ys = rng.integers(0, image.shape[0] - size, n)
    xs = rng.integers(0, image.shape[1] - size, n)
    return np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs)])


def test_image_report_self_zero_and_other_images_farther():
    extractor = load_feature_extractor(device="cpu")
    cats = _crops(skimage.data.chelsea(), 6)
    coffee = _crops(skimage.data.coffee(), 6)
    key = "FID (EfficientNet-Lite0 features)"
    other = fidelity_report(cats, coffee, extractor=extractor, k=3, progress=False)
    cat_features = extract_features(cats, extractor, progress=False)
    same = fidelity_from_features(cat_features, cat_features, encoder=extractor.display_name, k=3)
    assert same[key] == pytest.approx(0.0, abs=1e-3)
    assert other[key] > 1.0
    assert other["encoder"] == "EfficientNet-Lite0"
    assert 0.0 <= other["coverage (Naeem k=3, EfficientNet-Lite0 features)"] <= 1.0


def test_bad_inputs_name_the_argument(gaussians):
    a, _ = gaussians
    with pytest.raises(ValueError, match="`synth`"):
        frechet_distance(a, a[:1])
    with pytest.raises(ValueError, match="one encoder"):
        sliced_wasserstein(a, a[:, :3])
    with pytest.raises(ValueError, match="`k`"):
        manifold_metrics(a, a, k=0)
    with pytest.raises(TypeError, match="`extractor`"):
        fidelity_report(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8), extractor="x")
