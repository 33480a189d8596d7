"""Top-1 accuracy on the clean test set, Gaussian noise severities and the common corruptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.device import uses_cuda_fast_path

if TYPE_CHECKING:
    from worker.ml.corruptions import CorruptionSuite


class Metrics(TypedDict):
    clean: float  # top-1 accuracy as a fraction
    gaussian: float | None  # mean over the suite's Gaussian severities (None: suite has none)
    corruptions: float | None  # mean over corruption names x severities (None: suite has none)
    per_gaussian: dict[str, float]  # severity c (as text, e.g. "0.04") -> accuracy
    per_corruption: dict[str, dict[str, float]]  # name -> severity ("1".."5") -> accuracy


@torch.inference_mode()
def predict(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    *,
    device: torch.device,
    batch_size: int = 1024,
) -> npt.NDArray[np.int64]:
    """Predicted class of each uint8 NHWC image, in batches; the model is put in eval mode."""
    with torch.inference_mode(False):  # weights moved under inference mode could not be trained later
        model.to(device).eval()
    fast_path = uses_cuda_fast_path(device)
    memory_format = torch.channels_last if fast_path else torch.contiguous_format
    predictions = []
    for begin in range(0, len(images_uint8_nhwc), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc[begin : begin + batch_size])).to(
            device
        )
        batch = chunk.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=memory_format)
        # ---- CUDA only: bf16 autocast (enabled=False on CPU) ----
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=fast_path):
            predictions.append(model(batch).argmax(dim=1).cpu())
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
    if len(images_uint8_nhwc) != len(labels):
        raise ValueError(f"{len(images_uint8_nhwc)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("cannot measure accuracy on an empty test set")
    predictions = predict(model, images_uint8_nhwc, device=device, batch_size=batch_size)
    return float(np.mean(predictions == np.asarray(labels)))


def evaluate(
    model: nn.Module,
    x_test_uint8: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.integer],
    suite: CorruptionSuite,
    *,
    device: torch.device,
    batch_size: int = 1024,
) -> Metrics:
    """Clean, Gaussian (mean over severities) and corruption (mean over names x severities) accuracy."""
    per_gaussian = {
        f"{severity:g}": accuracy(model, images, y_test, device=device, batch_size=batch_size)
        for severity, images in sorted(suite.gaussian.items())
    }
    per_corruption = {
        name: {
            str(severity): accuracy(model, images, y_test, device=device, batch_size=batch_size)
            for severity, images in sorted(by_severity.items())
        }
        for name, by_severity in suite.corruptions.items()
    }
    corruption_values = [value for by_severity in per_corruption.values() for value in by_severity.values()]
    return Metrics(
        clean=accuracy(model, x_test_uint8, y_test, device=device, batch_size=batch_size),
        gaussian=float(np.mean(list(per_gaussian.values()))) if per_gaussian else None,
        corruptions=float(np.mean(corruption_values)) if corruption_values else None,
        per_gaussian=per_gaussian,
        per_corruption=per_corruption,
    )
