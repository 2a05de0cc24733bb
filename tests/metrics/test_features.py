"""The image encoder behind every fidelity number: weights load fully, features are meaningful."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import timm
import torch

from synthaug.metrics.features import (
    FeatureExtractor,
    build_efficientnet_lite0,
    efficientnet_lite0_weights_path,
    extract_features,
    load_feature_extractor,
    map_efficientnet_pytorch_state_dict,
)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return load_feature_extractor(device="cpu")


def _as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(image, -1, 0).copy())[None].float() / 255.0


def test_all_247_tensors_map_onto_timm_in_order():
    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    mapped = map_efficientnet_pytorch_state_dict(source, model.state_dict())
    assert len(mapped) == 247
    loaded = build_efficientnet_lite0(num_classes=1000).state_dict()
    assert torch.equal(loaded["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(loaded["classifier.weight"], source["_fc.weight"])
    assert torch.equal(loaded["bn2.running_var"], source["_bn1.running_var"])


def test_mapping_refuses_mismatched_shapes():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    target = model.state_dict()
    source = {f"src{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(target.items())}
    source["src0.weight"] = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="Shape mismatch"):
        map_efficientnet_pytorch_state_dict(source, target)
    with pytest.raises(ValueError, match="weight tensors"):
        map_efficientnet_pytorch_state_dict(dict(list(source.items())[1:]), target)


@pytest.mark.parametrize(("photo", "classes"), [("chelsea", range(281, 286)), ("coffee", (967, 968))])
def test_imagenet_classifier_recognises_photos(photo, classes):
    # The cat photo must come out as a cat (281-285), the coffee cup as espresso/cup: proof that the
    # weights, their order and the normalisation are right, not merely that shapes matched.
    model = build_efficientnet_lite0(num_classes=1000)
    classify = FeatureExtractor(model, display_name="EfficientNet-Lite0", num_features=1000)
    logits = classify(_as_batch(getattr(skimage.data, photo)()))
    assert int(logits.argmax()) in classes


def test_features_are_named_sized_deterministic_and_discriminative(extractor):
    assert extractor.display_name == "EfficientNet-Lite0"
    assert extractor.num_features == 1280
    cat, coffee = _as_batch(skimage.data.chelsea()), _as_batch(skimage.data.coffee())
    first = extractor(cat)
    extractor.train()  # must stay frozen: BatchNorm in train mode would change the output
    assert not extractor.training
    assert first.shape == (1, 1280)
    torch.testing.assert_close(extractor(cat), first)
    other = extractor(coffee)
    assert torch.linalg.vector_norm(first - other) > 0.1 * torch.linalg.vector_norm(first)


def test_any_input_size_and_uint8_match_float(extractor):
    image = skimage.data.chelsea()[:96, :128]
    as_uint8 = torch.from_numpy(np.moveaxis(image, -1, 0).copy())[None]
    torch.testing.assert_close(extractor(as_uint8), extractor(_as_batch(image)))


def test_extract_features_batches_equal_single_pass(extractor):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 40, 40, 3), dtype=np.uint8)
    batched = extract_features(images, extractor, batch_size=2, progress=False)
    single = extract_features(list(images), extractor, batch_size=5, progress=False)
    assert batched.shape == (5, 1280)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_argument(extractor, tmp_path):
    with pytest.raises(ValueError, match="`images`"):
        extractor(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor(torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="`name_or_path`"):
        load_feature_extractor("inception-from-the-internet")
    with pytest.raises(ValueError, match="`batch_size`"):
        extract_features(np.zeros((1, 8, 8, 3), np.uint8), extractor, batch_size=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_feature_extractor(tmp_path / "empty")


def test_inception_file_needs_torch_fidelity(tmp_path):
    pytest.importorskip("torchmetrics")
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if _TORCH_FIDELITY_AVAILABLE:
        pytest.skip("torch-fidelity is installed; the error path cannot be reached")
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    with pytest.raises(ModuleNotFoundError, match="torch-fidelity"):
        load_feature_extractor(weights)


def test_local_timm_folder(tmp_path):
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    timm.models.save_for_hf(model, tmp_path / "tiny", safe_serialization=True)
    extractor = load_feature_extractor(tmp_path / "tiny", device="cpu")
    assert extractor.num_features == model.num_features
    assert extractor.display_name == "test_efficientnet"
    features = extractor(torch.rand(2, 3, 48, 48))
    assert features.shape == (2, model.num_features)
    assert torch.isfinite(features).all()
