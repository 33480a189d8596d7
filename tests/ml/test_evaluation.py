"""Accuracy on clean, Gaussian and corrupted test sets, with per-severity breakdowns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from worker.ml.corruptions import CorruptionSuite
from worker.ml.evaluation import accuracy, evaluate, predict

CPU = torch.device("cpu")


class BrightIsOne(nn.Module):
    """Class 1 iff the mean pixel exceeds 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-centred, centred], dim=1)


def _images(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), dtype=np.uint8)


def test_predict_and_accuracy_in_small_batches() -> None:
    images, labels = _images([10, 200, 240, 30, 90]), np.array([0, 1, 1, 1, 0])
    assert predict(BrightIsOne(), images, device=CPU, batch_size=2).tolist() == [0, 1, 1, 0, 0]
    assert accuracy(BrightIsOne(), images, labels, device=CPU, batch_size=2) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="labels"):
        accuracy(BrightIsOne(), images, labels[:3], device=CPU)


def test_evaluate_reports_means_and_breakdowns() -> None:
    clean, labels = _images([10, 240, 20, 250]), np.array([0, 1, 0, 1])
    suite = CorruptionSuite(
        gaussian={0.04: clean, 0.1: _images([10, 240, 200, 250])},  # 100 % and 75 %
        corruptions={
            "fog": {1: clean, 2: _images([200, 10, 20, 250])},  # 100 % and 50 %
            "contrast": {1: _images([200, 10, 200, 10])},  # 0 %
        },
    )
    metrics, _per_image = evaluate(BrightIsOne(), clean, labels, suite, device=CPU, batch_size=3)
    assert metrics["clean"] == 1.0
    assert metrics["per_gaussian"] == {"0.04": 1.0, "0.1": 0.75}
    assert metrics["gaussian"] == pytest.approx(0.875)
    assert metrics["per_corruption"] == {"fog": {"1": 1.0, "2": 0.5}, "contrast": {"1": 0.0}}
    assert metrics["corruptions"] == pytest.approx(0.5)  # mean over all (name, severity) pairs


def test_empty_suite_parts_read_as_none() -> None:
    clean, labels = _images([10, 240]), np.array([0, 1])
    metrics, _per_image = evaluate(
        BrightIsOne(), clean, labels, CorruptionSuite(gaussian={}, corruptions={}), device=CPU
    )
    assert metrics["gaussian"] is None and metrics["corruptions"] is None and metrics["clean"] == 1.0
