"""ONNX export: onnxruntime's logits match PyTorch's, on images the test makes and on real ones.

Tolerance: max |logit difference| <= 1e-4 in fp32 (measured: ~1e-7 for the small CNN, ~2e-6 for
ResNet18; the operators are the same, only their summation order differs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from aqpl.datasets import load_dataset
from tests.conftest import SHARED_DATA
from worker.ml.checkpoints import sha256_of_file
from worker.ml.models import ModelSpec, build_model, spec_for_images
from worker.ml.onnx_export import INPUT_NAME, OPSET, export_onnx, onnx_path_beside
from worker.ml.training import TrainConfig, train_model

CPU = torch.device("cpu")
LOGIT_TOLERANCE = 1e-4  # fp32 on both sides: only the order of summation differs


def _trained(spec: ModelSpec, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64]) -> nn.Module:
    """A model whose weights and BatchNorm statistics have moved from their initial values."""
    model = build_model(spec, seed=0)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, seed=0)
    train_model(model, images, labels, np.full(len(labels), 20), config, device=CPU)
    return model.eval()


def _pixels(images_uint8_nhwc: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The input contract: float32 NCHW in [0, 1]."""
    return np.ascontiguousarray(images_uint8_nhwc.transpose(0, 3, 1, 2), dtype=np.float32) / 255


def _max_logit_difference(model: nn.Module, path: Path, images: npt.NDArray[np.uint8]) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = _pixels(images)
    with torch.inference_mode():
        expected = model(torch.from_numpy(pixels)).numpy()
    # One image and the whole batch: the batch dimension is dynamic.
    single = session.run(None, {INPUT_NAME: pixels[:1]})[0]
    batch = session.run(None, {INPUT_NAME: pixels})[0]
    assert single.shape == (1, expected.shape[1]) and batch.shape == expected.shape
    assert np.array_equal(batch.argmax(axis=1), expected.argmax(axis=1))
    return float(max(np.abs(single - expected[:1]).max(), np.abs(batch - expected).max()))


def test_small_cnn_matches_pytorch_on_images_it_makes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 12, 12, 1), dtype=np.uint8)
    labels = np.arange(64, dtype=np.int64) % 3
    spec = spec_for_images(images, 3, "small_cnn", ("a", "b", "c"))
    model = _trained(spec, images, labels)
    path = onnx_path_beside(tmp_path / "round_001.safetensors")
    exported = export_onnx(model, spec, path)

    assert path == tmp_path / "round_001.onnx" and exported.file == "round_001.onnx"
    assert exported.opset == OPSET
    assert exported.sha256 == sha256_of_file(path) and exported.size_bytes == path.stat().st_size
    assert [file.name for file in tmp_path.iterdir()] == ["round_001.onnx"]  # no temporary left
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert {entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")} == {OPSET}
    metadata = exported.to_metadata()
    assert metadata["normalization_in_graph"] is True
    assert metadata["input"] == {
        "name": "pixels",
        "dtype": "float32",
        "layout": "NCHW",
        "shape": ["batch", 1, 12, 12],
        "range": [0.0, 1.0],
        "channels": "grey",
    }
    assert metadata["output"]["shape"] == ["batch", 3]
    assert _max_logit_difference(model, path, images[:16]) <= LOGIT_TOLERANCE

    # Deterministic: the same weights give the same bytes (a redelivered publish rewrites them).
    again = export_onnx(model, spec, tmp_path / "again.onnx")
    assert again.sha256 == exported.sha256


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist is absent")
def test_small_cnn_matches_pytorch_on_real_mnist(tmp_path: Path) -> None:
    # 28x28: the adaptive pool maps 7x7 to 4x4, which the TorchScript exporter cannot export.
    dataset = load_dataset("mnist", SHARED_DATA / "mnist", train_limit=256, test_limit=32)
    spec = spec_for_images(dataset.x_train, 10, "small_cnn", tuple(str(digit) for digit in range(10)))
    model = _trained(spec, dataset.x_train, dataset.y_train)
    path = tmp_path / "mnist.onnx"
    export_onnx(model, spec, path)
    assert _max_logit_difference(model, path, dataset.x_test) <= LOGIT_TOLERANCE


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10-subset.npz").is_file(), reason="../shared/data/cifar10-subset.npz is absent"
)
def test_resnet18_matches_pytorch_on_real_cifar10(tmp_path: Path) -> None:
    # Untrained weights (ResNet18 trains at ~45 images/s here); eval-mode BatchNorm still runs.
    dataset = load_dataset("npz", SHARED_DATA / "cifar10-subset.npz", train_limit=100, test_limit=8)
    spec = spec_for_images(dataset.x_train, 10, "resnet18")
    model = build_model(spec, seed=0).eval()
    path = tmp_path / "cifar.onnx"
    exported = export_onnx(model, spec, path)
    assert exported.input["shape"] == ["batch", 3, 32, 32] and exported.input["channels"] == "RGB"
    assert _max_logit_difference(model, path, dataset.x_test) <= LOGIT_TOLERANCE
