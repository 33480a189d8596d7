"""Checkpoints that explain themselves: safetensors weights + JSON metadata, never pickle.

The metadata (architecture spec, input shape, classes, normalisation, and whatever the caller
adds: training config, round, σ summary, metrics) is stored as JSON in the safetensors header
under the key "aqpl", so one file is enough to rebuild and load the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from worker.ml.models import ModelSpec, build_model

METADATA_KEY = "aqpl"
FORMAT_VERSION = 1
# Keys the checkpoint writes itself; caller metadata may not set them to something else.
_RESERVED_KEYS = ("format_version", "spec", "architecture", "input_shape", "class_names", "normalization")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back: the message names the file and the problem."""


@dataclass(frozen=True)
class CheckpointInfo:
    sha256: str  # hex digest of the whole file
    size_bytes: int
    metadata: dict[str, Any]  # exactly what is stored under the "aqpl" header key


def _json_default(value: object) -> object:
    # numpy scalars/arrays and config dataclasses show up in metrics and training configs.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"checkpoint metadata value of type {type(value).__name__} is not JSON serialisable")


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_metadata(spec: ModelSpec, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document stored in the header: the spec-derived fields plus the caller's."""
    own: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "architecture": spec.architecture,
        "input_shape": [spec.in_channels, *spec.input_size],  # C, H, W of the [0, 1] input
        "class_names": list(spec.class_names),
        "normalization": {"mean": list(spec.mean), "std": list(spec.std)},
    }
    clashes = [key for key in _RESERVED_KEYS if key in metadata and metadata[key] != own[key]]
    if clashes:
        raise ValueError(f"metadata may not override {', '.join(clashes)}: they come from the ModelSpec")
    combined = {**dict(metadata), **own}
    # Round-trip through JSON so what we return is exactly what a reader will get back.
    parsed: dict[str, Any] = json.loads(json.dumps(combined, default=_json_default))
    return parsed


def save_checkpoint(
    path: Path, model: nn.Module, spec: ModelSpec, metadata: Mapping[str, Any]
) -> CheckpointInfo:
    """Write model weights and metadata to `path` atomically; returns the file's sha256 and size."""
    document = checkpoint_metadata(spec, metadata)
    # safetensors wants contiguous tensors that share no memory; CPU copies in NCHW layout.
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in model.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata={METADATA_KEY: json.dumps(document, sort_keys=True)})
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return CheckpointInfo(sha256=sha256_of_file(path), size_bytes=path.stat().st_size, metadata=document)


def read_checkpoint_metadata(path: Path) -> dict[str, Any]:
    """The "aqpl" metadata of a checkpoint without loading its weights."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: no such checkpoint file") from error
    except Exception as error:  # safetensors raises its own SafetensorError for malformed files
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path}: safetensors header has no {METADATA_KEY!r} metadata")
    try:
        document: dict[str, Any] = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {METADATA_KEY!r} metadata is not valid JSON ({error})") from error
    return document


def load_checkpoint(path: Path, *, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the stored spec, load its weights (strict), move to `device`, eval mode."""
    document = read_checkpoint_metadata(path)
    try:
        spec = ModelSpec.from_dict(document["spec"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: metadata has no valid model spec ({error})") from error
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    model = build_model(spec, seed=0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: weights do not match the {spec.architecture} spec ({error})"
        ) from error
    model.to(device).eval()
    return model, document
