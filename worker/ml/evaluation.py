"""Top-1 accuracy on the clean test set, Gaussian noise severities and the common corruptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.device import cpu_has_fast_bf16, uses_cuda_fast_path

if TYPE_CHECKING:
    from worker.ml.corruptions import CorruptionSuite


class Metrics(TypedDict):
    clean: float  # top-1 accuracy as a fraction
    gaussian: float | None  # mean over the suite's Gaussian severities (None: suite has none)
    corruptions: float | None  # mean over corruption names x severities (None: suite has none)
    per_gaussian: dict[str, float]  # severity c (as text, e.g. "0.04") -> accuracy
    per_corruption: dict[str, dict[str, float]]  # name -> severity ("1".."5") -> accuracy


FAST_CPU_BATCH = 256  # images per forward pass with fast_cpu: activations stay in cache (docs/engine.md)


@torch.inference_mode()
def predict(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    *,
    device: torch.device,
    batch_size: int = 1024,
    fast_cpu: bool = False,
) -> npt.NDArray[np.int64]:
    """Predicted class of each uint8 NHWC image, in batches; the model is put in eval mode.

    CUDA always runs channels-last with bf16 autocast. `fast_cpu` does the same on the CPU (bf16 only
    where it is native, as scoring does) in batches of FAST_CPU_BATCH: ~3x faster for the small CNN,
    a few borderline predictions differ from fp32. The model's layout is restored afterwards.
    """
    fast_path = uses_cuda_fast_path(device) or (fast_cpu and device.type == "cpu")
    use_bf16 = uses_cuda_fast_path(device) or (fast_path and cpu_has_fast_bf16())
    if fast_cpu and device.type == "cpu":
        batch_size = FAST_CPU_BATCH
    memory_format = torch.channels_last if fast_path else torch.contiguous_format
    with torch.inference_mode(False):  # weights moved under inference mode could not be trained later
        model.to(device).eval()
        if fast_path:
            model.to(memory_format=memory_format)
    predictions = []
    try:
        for begin in range(0, len(images_uint8_nhwc), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc[begin : begin + batch_size]))
            batch = (
                chunk.to(device)
                .permute(0, 3, 1, 2)
                .float()
                .div_(255.0)
                .contiguous(memory_format=memory_format)
            )
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                predictions.append(model(batch).argmax(dim=1).cpu())
    finally:
        if fast_path and not uses_cuda_fast_path(device):
            with torch.inference_mode(False):
                model.to(memory_format=torch.contiguous_format)  # safetensors and NCHW callers want it
    if not predictions:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(predictions).numpy().astype(np.int64)


def accuracy(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    *,
    device: torch.device,
    batch_size: int = 1024,
) -> float:
    """Top-1 accuracy as a fraction."""
    return float(np.mean(_correct(model, images_uint8_nhwc, labels, device=device, batch_size=batch_size)))


def _correct(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    *,
    device: torch.device,
    batch_size: int,
    fast_cpu: bool = False,
) -> npt.NDArray[np.bool_]:
    if len(images_uint8_nhwc) != len(labels):
        raise ValueError(f"{len(images_uint8_nhwc)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("cannot measure accuracy on an empty test set")
    predictions = predict(model, images_uint8_nhwc, device=device, batch_size=batch_size, fast_cpu=fast_cpu)
    correct: npt.NDArray[np.bool_] = predictions == np.asarray(labels)
    return correct


def evaluate(
    model: nn.Module,
    x_test_uint8: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.integer],
    suite: CorruptionSuite,
    *,
    device: torch.device,
    batch_size: int = 1024,
    fast_cpu: bool = False,
) -> tuple[Metrics, dict[str, npt.NDArray[np.float64]]]:
    """Clean, Gaussian (mean over severities) and corruption (mean over names x severities) accuracy,
    and, per metric, each test image's score: 1/0 for clean; for Gaussian and corruptions the share of
    the image's copies classified right (the metric is their mean), which is what a bootstrap over test
    images resamples. `fast_cpu` as in `predict`."""

    def correct(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        return _correct(model, images, y_test, device=device, batch_size=batch_size, fast_cpu=fast_cpu)

    gaussian_correct = {severity: correct(images) for severity, images in sorted(suite.gaussian.items())}
    corruption_correct = {
        name: {severity: correct(images) for severity, images in sorted(by_severity.items())}
        for name, by_severity in suite.corruptions.items()
    }
    corruption_rows = [row for by_severity in corruption_correct.values() for row in by_severity.values()]
    clean = correct(x_test_uint8).astype(np.float64)
    per_image: dict[str, npt.NDArray[np.float64]] = {"clean": clean}
    if gaussian_correct:
        per_image["gaussian"] = np.mean(list(gaussian_correct.values()), axis=0, dtype=np.float64)
    if corruption_rows:
        per_image["corruptions"] = np.mean(corruption_rows, axis=0, dtype=np.float64)
    metrics = Metrics(
        clean=float(clean.mean()),
        gaussian=float(per_image["gaussian"].mean()) if gaussian_correct else None,
        corruptions=float(per_image["corruptions"].mean()) if corruption_rows else None,
        per_gaussian={f"{severity:g}": float(row.mean()) for severity, row in gaussian_correct.items()},
        per_corruption={
            name: {str(severity): float(row.mean()) for severity, row in by_severity.items()}
            for name, by_severity in corruption_correct.items()
        },
    )
    return metrics, per_image
