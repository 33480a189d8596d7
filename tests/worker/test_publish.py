"""Publishing a checkpoint: the ONNX export beside the safetensors file, recorded in its metadata;
a failed export is recorded with its reason and the publish goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from worker import pipeline
from worker.ml.checkpoints import read_checkpoint_metadata, sha256_of_file
from worker.ml.models import ModelSpec, build_model, spec_for_images
from worker.ml.onnx_export import OPSET


def test_publish_writes_the_onnx_export_and_records_it(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    spec = spec_for_images(images, 2, "small_cnn", ("zero", "one"))
    path = tmp_path / "round_001.safetensors"
    info = pipeline.publish_weights(path, build_model(spec, seed=0), spec, {"round": 1})

    onnx = info.metadata["onnx"]
    assert onnx["file"] == "round_001.onnx" and onnx["opset"] == OPSET
    assert onnx["sha256"] == sha256_of_file(tmp_path / "round_001.onnx")
    assert onnx["size_bytes"] == (tmp_path / "round_001.onnx").stat().st_size
    assert onnx["normalization_in_graph"] is True and onnx["input"]["layout"] == "NCHW"
    assert "onnx_error" not in info.metadata
    assert read_checkpoint_metadata(path) == info.metadata  # the safetensors header says the same
    assert sorted(file.name for file in tmp_path.iterdir()) == ["round_001.onnx", "round_001.safetensors"]


def test_a_failed_export_is_recorded_and_the_publish_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A 1x1 input cannot go through the small CNN's 2x2 max-pool: the exporter fails while tracing.
    spec = ModelSpec("small_cnn", 1, 2, (1, 1), (0.5,), (0.25,), ("zero", "one"))
    path = tmp_path / "round_002.safetensors"
    (tmp_path / "round_002.onnx").write_bytes(b"an earlier attempt's export")
    with caplog.at_level(logging.WARNING, logger="aqpl.worker"):
        info = pipeline.publish_weights(path, build_model(spec, seed=0), spec, {"round": 2})

    assert info.metadata["onnx"] is None
    assert info.metadata["onnx_error"] and len(info.metadata["onnx_error"]) <= 300
    assert read_checkpoint_metadata(path)["onnx"] is None
    assert [file.name for file in tmp_path.iterdir()] == ["round_002.safetensors"]  # stale export gone
    assert any("ONNX export of round_002.safetensors failed" in record.message for record in caplog.records)
