"""ONNX export of a classifier, for clients that do not run PyTorch.

The graph holds the whole `ImageClassifier`, normalisation included: a client feeds float32 NCHW
pixels in [0, 1] (the layout and range the PyTorch model takes) and gets logits, softmax not
applied. The batch dimension is dynamic. Its logits match PyTorch's to within 1e-4 in fp32
(tests/ml/test_onnx_export.py measures it in onnxruntime).

torch.onnx's dynamo exporter (torch.export, then onnxscript) is used because the TorchScript one
cannot export the small CNN's adaptive pool on 28x28 inputs (7x7 -> 4x4 is not a whole factor).
Export is deterministic: the same weights give the same bytes, so a redelivered publish writes the
same file. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.ml.checkpoints import sha256_of_file
from worker.ml.models import ModelSpec, build_model

# Opset 18 is the lowest the dynamo exporter emits; onnxruntime >= 1.14 (2023) and most other
# runtimes read it, so it is kept fixed rather than following torch's newest default.
OPSET = 18
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
EXAMPLE_BATCH = 2  # traced with 2 images: a batch of 1 would let torch.export specialise the size
SUFFIX = ".onnx"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes in exporter messages


@dataclass(frozen=True)
class OnnxExport:
    """What checkpoint metadata records about the ONNX file (under the "onnx" key)."""

    file: str  # file name only: the export lies beside the safetensors checkpoint
    opset: int
    sha256: str  # hex digest of the .onnx file (its download's ETag)
    size_bytes: int
    input: dict[str, Any]  # the input contract: name, dtype, layout, shape, value range
    output: dict[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "opset": self.opset,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "normalization_in_graph": True,
            "input": self.input,
            "output": self.output,
            "exporter": f"torch.onnx dynamo (torch {torch.__version__.split('+')[0]})",
        }


def onnx_path_beside(checkpoint_path: Path) -> Path:
    """Where a checkpoint's export goes: same folder and stem, `.onnx` suffix."""
    return checkpoint_path.with_suffix(SUFFIX)


def input_contract(spec: ModelSpec) -> dict[str, Any]:
    """What a client feeds the graph: float32 NCHW in [0, 1], any batch size."""
    height, width = spec.input_size
    return {
        "name": INPUT_NAME,
        "dtype": "float32",
        "layout": "NCHW",
        "shape": ["batch", spec.in_channels, height, width],
        "range": [0.0, 1.0],  # uint8 pixels / 255; mean/std normalisation happens inside the graph
        "channels": "grey" if spec.in_channels == 1 else "RGB",
    }


def output_contract(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": OUTPUT_NAME,
        "dtype": "float32",
        "shape": ["batch", spec.num_classes],
        "meaning": "logits (no softmax), columns in class_names order",
    }


def export_onnx(model: nn.Module, spec: ModelSpec, path: Path, *, opset: int = OPSET) -> OnnxExport:
    """Write `model` (built from `spec`) as an ONNX graph to `path` atomically.

    The model is copied to the CPU in eval mode first, so the caller's model (on any device, in any
    memory format) is left as it was. Raises whatever the exporter raises; nothing is left behind.
    """
    cpu_model = build_model(spec, seed=0)
    cpu_model.load_state_dict(
        {name: tensor.detach().to("cpu") for name, tensor in model.state_dict().items()}, strict=True
    )
    cpu_model.eval()
    example = torch.rand(
        EXAMPLE_BATCH, spec.in_channels, *spec.input_size, generator=torch.Generator().manual_seed(0)
    )
    # The exporter narrates its steps on stdout; a worker's log keeps only what went wrong.
    with contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            cpu_model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    if program is None:  # only the TorchScript path returns None (it writes to a file argument)
        raise RuntimeError("torch.onnx.export returned no program")
    data = program.model_proto.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return OnnxExport(
        file=path.name,
        opset=opset,
        sha256=sha256_of_file(path),
        size_bytes=path.stat().st_size,
        input=input_contract(spec),
        output=output_contract(spec),
    )


def failure_reason(error: BaseException) -> str:
    """A short, one-line reason for metadata and the API: the error and its root cause, first lines
    only (exporter errors run to pages, with terminal colour codes in them)."""

    def line(exception: BaseException) -> str:
        text = _ANSI.sub("", str(exception))
        first = next((part.strip() for part in text.splitlines() if part.strip()), "")
        return f"{type(exception).__name__}: {first}" if first else type(exception).__name__

    root = error
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    reason = line(error) if root is error else f"{line(error)} (caused by {line(root)})"
    return reason[:300]
