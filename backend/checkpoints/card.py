"""A checkpoint's model card: Markdown rendered from the metadata and metrics stored at publish time.

Rendered on request rather than written as a file: the row already holds everything the card
says (the metadata is the safetensors header's copy), so the two cannot drift apart, and
checkpoints published before cards existed get one too. Every field is optional here: what a
checkpoint does not record is said to be unrecorded, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aqpl.ladder import LADDER_STEP
from backend.models import Checkpoint

UNRECORDED = "not recorded"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _percent(value: object) -> str:
    number = _number(value)
    return f"{100 * number:.1f} %" if number is not None else UNRECORDED


def _sigma(index: object) -> str:
    number = _number(index)
    return f"{number * LADDER_STEP:.3f}" if number is not None else UNRECORDED


def _size(size_bytes: object) -> str:
    number = _number(size_bytes)
    if number is None:
        return UNRECORDED
    for unit in ("bytes", "KiB", "MiB"):
        if number < 1024 or unit == "MiB":
            return f"{number:.0f} {unit}" if unit == "bytes" else f"{number:.1f} {unit}"
        number /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _value(value: object) -> str:
    if value is None:
        return UNRECORDED
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def _files(checkpoint: Checkpoint, meta: Mapping[str, Any]) -> list[str]:
    base = f"/api/v1/checkpoints/{checkpoint.id}/file"
    lines = [
        "## Files",
        "",
        "| format | download | size | sha256 |",
        "|---|---|---|---|",
        f"| safetensors (weights + this metadata) | `GET {base}` | {_size(checkpoint.size_bytes)} "
        f"| `{checkpoint.sha256}` |",
    ]
    onnx = meta.get("onnx")
    if isinstance(onnx, Mapping):
        lines.append(
            f"| ONNX, opset {_value(onnx.get('opset'))} | `GET {base}?format=onnx` "
            f"| {_size(onnx.get('size_bytes'))} | `{_value(onnx.get('sha256'))}` |"
        )
    lines += ["", "Each download's ETag is its sha256; `aqpl pull` checks it."]
    if not isinstance(onnx, Mapping):
        reason = meta.get("onnx_error")
        lines.append(
            f"No ONNX export: {reason}."
            if reason
            else "No ONNX export: this checkpoint was published before exports were made."
        )
    return [*lines, ""]


def _model(meta: Mapping[str, Any]) -> list[str]:
    spec = _mapping(meta.get("spec"))
    normalization = _mapping(meta.get("normalization"))
    classes = meta.get("class_names") or spec.get("class_names")
    shape = meta.get("input_shape")
    return [
        "## Model",
        "",
        f"- Architecture: {_value(meta.get('architecture') or spec.get('architecture'))}",
        f"- Input (C, H, W): {_value(shape)}, pixels in [0, 1]",
        f"- Classes ({len(classes) if isinstance(classes, list) else '?'}): {_value(classes)}",
        f"- Normalisation inside the model: mean {_value(normalization.get('mean'))}, "
        f"std {_value(normalization.get('std'))}",
        "",
    ]


def _data(meta: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    dataset = _mapping(meta.get("dataset"))
    sizes = _mapping(meta.get("data"))
    limits = ", ".join(f"{key} {value}" for key, value in dataset.items() if key != "format" and value)
    return [
        "## Data",
        "",
        f"- Dataset: {_value(dataset.get('format'))}" + (f" ({limits})" if limits else ""),
        f"- Training examples: {_value(sizes.get('train_examples'))}",
        f"- Test examples: {_value(sizes.get('test_examples'))}, "
        f"of which evaluated: {_value(metrics.get('test_examples'))}",
        "",
    ]


def _sigma_summary(meta: Mapping[str, Any]) -> list[str]:
    sigma = _mapping(meta.get("sigma"))
    lines = ["## σ the model was trained with", ""]
    if not sigma:
        return [*lines, f"σ per example: {UNRECORDED}.", ""]
    return [
        *lines,
        "Gaussian noise level per training example (σ = ladder index / 100, pixels in [0, 1]):",
        "",
        f"- Examples: {_value(sigma.get('count'))}",
        f"- Mean σ: {_sigma(sigma.get('mean_index'))}, median σ: {_sigma(sigma.get('median_index'))}",
        f"- Range: {_sigma(sigma.get('min_index'))} to {_sigma(sigma.get('max_index'))}",
        "",
    ]


def _metrics(metrics: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Metrics",
        "",
        "Top-1 accuracy on the test images:",
        "",
        "| clean | Gaussian noise (mean over severities) | corruptions (mean over names and severities) |",
        "|---|---|---|",
        f"| {_percent(metrics.get('clean'))} | {_percent(metrics.get('gaussian'))} "
        f"| {_percent(metrics.get('corruptions'))} |",
        "",
    ]
    per_gaussian = _mapping(metrics.get("per_gaussian"))
    if per_gaussian:
        lines += ["| Gaussian σ | accuracy |", "|---|---|"]
        lines += [f"| {severity} | {_percent(value)} |" for severity, value in per_gaussian.items()]
        lines.append("")
    per_corruption = _mapping(metrics.get("per_corruption"))
    if per_corruption:
        lines += ["| corruption | accuracy per severity |", "|---|---|"]
        for name, by_severity in per_corruption.items():
            cells = ", ".join(f"{level}: {_percent(value)}" for level, value in _mapping(by_severity).items())
            lines.append(f"| {name} | {cells} |")
        lines.append("")
    return lines


def _training(meta: Mapping[str, Any]) -> list[str]:
    training = _mapping(meta.get("training"))
    round_number = meta.get("round")
    how = (
        "pretrained from fresh weights"
        if round_number == 0
        else "fine-tuned from the previous round's checkpoint"
        + (f" (sha256 `{meta['parent_checkpoint_sha256']}`)" if meta.get("parent_checkpoint_sha256") else "")
    )
    return [
        "## Training",
        "",
        f"- Round {_value(round_number)}: {how if round_number is not None else UNRECORDED}",
        f"- Method: {_value(meta.get('method'))} (gnt: each example at its σ; cat: σ adapted while training)",
        f"- Epochs: {_value(training.get('epochs'))}, batch size: {_value(training.get('batch_size'))}",
        f"- Learning rate: {_value(training.get('lr'))} "
        f"(peak; schedule {_value(training.get('lr_schedule'))}), "
        f"momentum {_value(training.get('momentum'))}, weight decay {_value(training.get('weight_decay'))}",
        f"- Seed: {_value(training.get('seed'))}",
        f"- Final loss: {_value(training.get('final_loss'))}, seconds: {_value(training.get('seconds'))}",
        "",
    ]


def _onnx_contract(meta: Mapping[str, Any]) -> list[str]:
    onnx = meta.get("onnx")
    if not isinstance(onnx, Mapping):
        return []
    given = _mapping(onnx.get("input"))
    output = _mapping(onnx.get("output"))
    inside = onnx.get("normalization_in_graph") is True
    return [
        "## Using the ONNX export",
        "",
        f"- Input `{_value(given.get('name'))}`: {_value(given.get('dtype'))}, "
        f"layout {_value(given.get('layout'))}, shape {_value(given.get('shape'))} "
        f"({_value(given.get('channels'))}), values in {_value(given.get('range'))}: uint8 pixels / 255.",
        "- Normalisation is inside the graph: do not subtract the mean or divide by the std."
        if inside
        else "- Normalisation is not inside the graph: apply the mean and std above first.",
        f"- Output `{_value(output.get('name'))}`: {_value(output.get('dtype'))}, shape "
        f"{_value(output.get('shape'))}, {_value(output.get('meaning'))}.",
        f"- Opset {_value(onnx.get('opset'))}; exported by {_value(onnx.get('exporter'))}.",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        'session = ort.InferenceSession("model.onnx")',
        "pixels = images_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255  # NHWC -> NCHW",
        f'logits = session.run(None, {{"{_value(given.get("name"))}": pixels}})[0]',
        "```",
        "",
    ]


def render_card(checkpoint: Checkpoint, *, project_name: str) -> str:
    """The model card of `checkpoint` as Markdown."""
    meta = _mapping(checkpoint.meta)
    metrics = _mapping(checkpoint.metrics)
    created = checkpoint.created_at.strftime("%Y-%m-%d %H:%M UTC") if checkpoint.created_at else UNRECORDED
    lines = [
        f"# Model card: {project_name}, round {checkpoint.round_number}",
        "",
        f"Checkpoint {checkpoint.id} of project {checkpoint.project_id}, published {created}. "
        "Trained by AQPL Studio with Gaussian noise at a per-example level σ that people chose "
        "(Actively Query Perturbation Levels).",
        "",
        *_files(checkpoint, meta),
        *_model(meta),
        *_data(meta, metrics),
        *_sigma_summary(meta),
        *_metrics(metrics),
        *_training(meta),
        *_onnx_contract(meta),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
