"""Image classifiers that take [0, 1] pixels: normalisation lives inside the model.

`ModelSpec` is everything needed to rebuild a model from a checkpoint (see checkpoints.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
import torchvision
from torch import nn

if TYPE_CHECKING:
    from aqpl.datasets import ImageDataset

MODEL_NAMES = ("resnet18", "small_cnn")


@dataclass(frozen=True)
class ModelSpec:
    architecture: str  # one of MODEL_NAMES
    in_channels: int  # 1 (grey) or 3 (RGB)
    num_classes: int
    input_size: tuple[int, int]  # (H, W) in pixels
    mean: tuple[float, ...]  # per-channel mean of the training pixels in [0, 1]
    std: tuple[float, ...]  # per-channel standard deviation of the training pixels in [0, 1]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.architecture not in MODEL_NAMES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}: expected one of {', '.join(MODEL_NAMES)}"
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"mean and std need {self.in_channels} values, one per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return {
            "architecture": self.architecture,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        height, width = data["input_size"]
        return cls(
            architecture=str(data["architecture"]),
            in_channels=int(data["in_channels"]),
            num_classes=int(data["num_classes"]),
            input_size=(int(height), int(width)),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            class_names=tuple(str(v) for v in data["class_names"]),
        )


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers so they travel with the weights."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """normalize -> backbone; callers pass float (N, C, H, W) pixels in [0, 1] and get logits."""

    def __init__(self, normalize: Normalize, backbone: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.backbone(self.normalize(x))
        return logits


def _small_cnn(in_channels: int, num_classes: int) -> nn.Module:
    # Two conv blocks (~4 M multiply-adds on 28x28): a few thousand images/s on 2 CPU cores.
    # The adaptive pool makes it accept any input size >= 4x4 (digits 32x32, MNIST 28x28).
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, num_classes),
    )


def _cifar_resnet18(in_channels: int, num_classes: int) -> nn.Module:
    # CIFAR stem: 3x3 stride-1 conv and no max-pool keep 32x32 inputs at full resolution
    # (the ImageNet 7x7/2 + pool stem would shrink them to 8x8 before the first block).
    network = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    network.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    network.maxpool = nn.Identity()
    backbone: nn.Module = network
    return backbone


def build_model(spec: ModelSpec, *, seed: int | None = None) -> nn.Module:
    """A freshly initialised classifier for `spec` on the CPU.

    With `seed` the initial weights depend only on it (the global RNG is left untouched);
    without, they come from torch's global RNG, so `torch.manual_seed` before the call also works.
    """
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if spec.architecture == "resnet18":
            backbone = _cifar_resnet18(spec.in_channels, spec.num_classes)
        else:
            backbone = _small_cnn(spec.in_channels, spec.num_classes)
    return ImageClassifier(Normalize(spec.mean, spec.std), backbone)


def spec_for_images(
    images_uint8_nhwc: npt.NDArray[np.uint8],
    num_classes: int,
    architecture: str,
    class_names: tuple[str, ...] | None = None,
) -> ModelSpec:
    """ModelSpec with the per-channel mean/std of `images` (uint8 NHWC) in [0, 1] units."""
    if images_uint8_nhwc.ndim != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got shape {images_uint8_nhwc.shape}")
    _, height, width, channels = images_uint8_nhwc.shape
    pixels = images_uint8_nhwc.reshape(-1, channels).astype(np.float64) / 255.0
    mean = pixels.mean(axis=0)
    # A constant channel would divide by zero; 1/255 is one grey level.
    std = np.maximum(pixels.std(axis=0), 1.0 / 255.0)
    names = class_names if class_names is not None else tuple(str(k) for k in range(num_classes))
    return ModelSpec(
        architecture=architecture,
        in_channels=int(channels),
        num_classes=num_classes,
        input_size=(int(height), int(width)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=tuple(names),
    )


def spec_for_dataset(dataset: ImageDataset, architecture: str) -> ModelSpec:
    """ModelSpec for a dataset: shapes and classes from it, mean/std from its training images."""
    return spec_for_images(
        dataset.x_train, len(dataset.class_names), architecture, tuple(dataset.class_names)
    )
