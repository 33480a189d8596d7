"""safetensors checkpoints: identical logits after a round trip, metadata in the header, sha256."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worker.ml.checkpoints import (
    METADATA_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from worker.ml.models import ModelSpec, build_model
from worker.ml.training import TrainConfig, train_model

CPU = torch.device("cpu")


def _spec(architecture: str = "small_cnn", channels: int = 1, size: int = 12) -> ModelSpec:
    return ModelSpec(
        architecture, channels, 3, (size, size), (0.4,) * channels, (0.3,) * channels, ("a", "b", "c")
    )


def _trained_model(spec: ModelSpec) -> torch.nn.Module:
    rng = np.random.default_rng(0)
    height, width = spec.input_size
    images = rng.integers(0, 256, (24, height, width, spec.in_channels), dtype=np.uint8)
    labels = np.arange(24) % 3
    model = build_model(spec, seed=0)
    # A few steps move the weights and BatchNorm running statistics away from their initial values.
    train_model(
        model, images, labels, np.full(24, 20), TrainConfig(epochs=1, batch_size=8, lr=0.05), device=CPU
    )
    return model


@pytest.mark.parametrize("architecture", ["small_cnn", "resnet18"])
def test_round_trip_gives_identical_logits(tmp_path: Path, architecture: str) -> None:
    spec = _spec(architecture, channels=3 if architecture == "resnet18" else 1, size=8)
    model = _trained_model(spec).eval()
    path = tmp_path / "round-1.safetensors"
    info = save_checkpoint(path, model, spec, {"round": 1, "metrics": {"clean": np.float32(0.5)}})
    loaded, metadata = load_checkpoint(path, device=CPU)
    assert not loaded.training
    inputs = torch.rand(4, spec.in_channels, *spec.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model(inputs), loaded(inputs))
    assert metadata == info.metadata
    assert metadata["round"] == 1 and metadata["metrics"]["clean"] == 0.5


def test_sha256_and_size_describe_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    info = save_checkpoint(path, build_model(_spec(), seed=0), _spec(), {})
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.size_bytes == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary file left behind


def test_metadata_lives_in_the_safetensors_header(tmp_path: Path) -> None:
    spec = _spec()
    path = tmp_path / "model.safetensors"
    training = TrainConfig(epochs=3, batch_size=128, lr=0.05)
    save_checkpoint(
        path, build_model(spec, seed=0), spec, {"training_config": training, "sigma_summary": {"mean": 31.5}}
    )
    header_length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + header_length])  # plain JSON: no pickle anywhere
    document = json.loads(header["__metadata__"][METADATA_KEY])
    assert document["architecture"] == "small_cnn"
    assert document["input_shape"] == [1, 12, 12]
    assert document["class_names"] == ["a", "b", "c"]
    assert document["normalization"] == {"mean": [0.4], "std": [0.3]}
    assert document["training_config"]["epochs"] == 3
    assert document["sigma_summary"] == {"mean": 31.5}
    assert ModelSpec.from_dict(document["spec"]) == spec
    assert read_checkpoint_metadata(path) == document
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        assert "normalize.mean" in handle.keys()  # noqa: SIM118 (safe_open is not a dict)


def test_caller_cannot_contradict_the_spec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture"):
        save_checkpoint(
            tmp_path / "x.safetensors", build_model(_spec(), seed=0), _spec(), {"architecture": "vgg"}
        )


def test_broken_checkpoints_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors", device=CPU)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(garbage, device=CPU)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="no 'aqpl' metadata"):
        load_checkpoint(bare, device=CPU)
    mismatched = tmp_path / "mismatched.safetensors"
    save_checkpoint(mismatched, build_model(_spec(size=12), seed=0), _spec(architecture="resnet18"), {})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched, device=CPU)
