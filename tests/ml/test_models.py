"""Model specs and builders: CIFAR ResNet18 stem, small CNN, normalisation inside the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from aqpl.datasets import ImageDataset
from worker.ml.models import (
    MODEL_NAMES,
    ImageClassifier,
    ModelSpec,
    build_model,
    spec_for_dataset,
    spec_for_images,
)


def _spec(architecture: str, channels: int, size: int = 32, classes: int = 10) -> ModelSpec:
    return ModelSpec(
        architecture=architecture,
        in_channels=channels,
        num_classes=classes,
        input_size=(size, size),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        class_names=tuple(f"class {k}" for k in range(classes)),
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet18_has_cifar_stem_and_accepts_grey_and_colour(channels: int) -> None:
    model = build_model(_spec("resnet18", channels), seed=0)
    assert isinstance(model, ImageClassifier)
    stem = model.backbone.conv1
    assert isinstance(stem, nn.Conv2d)
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.in_channels == channels
    assert isinstance(model.backbone.maxpool, nn.Identity)
    model.eval()
    with torch.inference_mode():
        logits = model(torch.rand(2, channels, 32, 32))
    assert logits.shape == (2, 10)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (1, 8)])
def test_small_cnn_accepts_dataset_sizes(channels: int, size: int) -> None:
    model = build_model(_spec("small_cnn", channels, size=size, classes=4), seed=0).eval()
    with torch.inference_mode():
        assert model(torch.rand(5, channels, size, size)).shape == (5, 4)


def test_normalisation_is_inside_the_model() -> None:
    spec = _spec("small_cnn", 1, size=8, classes=3)
    model = build_model(spec, seed=0).eval()
    assert isinstance(model, ImageClassifier)
    pixels = torch.rand(4, 1, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(model(pixels), model.backbone((pixels - 0.5) / 0.25))


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    spec = _spec("small_cnn", 1, size=8, classes=3)
    state_before = torch.random.get_rng_state()
    first, again, other = (build_model(spec, seed=s).state_dict() for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state_before)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["backbone.0.weight"], other["backbone.0.weight"])
    torch.manual_seed(5)
    global_one = build_model(spec).state_dict()["backbone.0.weight"]
    torch.manual_seed(5)
    assert torch.equal(global_one, build_model(spec).state_dict()["backbone.0.weight"])


def test_spec_round_trips_through_json() -> None:
    spec = _spec("resnet18", 3)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        _spec("vgg", 3)
    with pytest.raises(ValueError, match="class names"):
        ModelSpec("small_cnn", 1, 3, (8, 8), (0.5,), (0.2,), ("a", "b"))
    assert set(MODEL_NAMES) == {"resnet18", "small_cnn"}


def test_spec_for_images_measures_channel_mean_and_std() -> None:
    images = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    images[..., 0] = 255
    images[:2, ..., 1] = 255
    spec = spec_for_images(images, num_classes=2, architecture="small_cnn")
    assert spec.mean == pytest.approx((1.0, 0.5, 0.0))
    assert spec.std[1] == pytest.approx(0.5)
    assert spec.std[0] == pytest.approx(1 / 255)  # a constant channel gets one grey level, not zero
    assert (spec.in_channels, spec.input_size, spec.class_names) == (3, (2, 2), ("0", "1"))


def test_spec_for_dataset_takes_shapes_and_classes_from_the_dataset() -> None:
    rng = np.random.default_rng(0)
    dataset = ImageDataset(
        name="toy",
        x_train=rng.integers(0, 256, (6, 12, 10, 1), dtype=np.uint8),
        y_train=np.array([0, 1, 2, 0, 1, 2], dtype=np.int64),
        x_test=rng.integers(0, 256, (3, 12, 10, 1), dtype=np.uint8),
        y_test=np.array([0, 1, 2], dtype=np.int64),
        class_names=("bar", "column", "diagonal"),
    )
    spec = spec_for_dataset(dataset, "resnet18")
    assert (spec.in_channels, spec.input_size, spec.num_classes) == (1, (12, 10), 3)
    assert spec.class_names == ("bar", "column", "diagonal")
    assert spec.mean[0] == pytest.approx(dataset.x_train.mean() / 255)
