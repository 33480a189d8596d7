"""How scoring computes: batch size, precision (bf16 autocast or a static int8 copy) and memory layout.

Defaults (docs/engine.md, "Precision and layout"): bf16 autocast on CUDA and on CPUs with
native bf16, fp32 elsewhere; channels-last everywhere, with the model's own layout restored
afterwards; int8 (worker/ml/quantization.py) only when asked, and only on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.device import cpu_has_fast_bf16, uses_cuda_fast_path
from worker.ml.noise import derive_seed, sigmas_of_indices
from worker.ml.quantization import Classifier, quantize_for_cpu

DEFAULT_CPU_BATCH = 64  # noisy images per forward pass on a CPU: activations stay in cache (docs/engine.md)
DEFAULT_CUDA_BATCH = 8192  # noisy images per forward pass on a GPU: large enough to saturate an H100
INT8_CALIBRATION_IMAGES = 256  # noisy images whose activation ranges set an int8 model's scales
_CALIBRATION_STREAM = 0xCA11B  # derive_seed key of the calibration noise (distinct from noise blocks)


@dataclass(frozen=True)
class ComputeSettings:
    use_bf16: bool
    channels_last: bool
    batch_size: int
    int8: bool = False

    @classmethod
    def resolve(
        cls,
        device: torch.device,
        batch_size: int | None,
        mixed_precision: bool | None,
        channels_last: bool | None,
        int8: bool = False,
    ) -> ComputeSettings:
        fast_path = uses_cuda_fast_path(device)
        batch_size = batch_size or (DEFAULT_CUDA_BATCH if fast_path else DEFAULT_CPU_BATCH)
        if int8:
            if device.type != "cpu":
                raise ValueError(f"int8 scoring runs on the CPU only, not on {device}")
            if mixed_precision or channels_last:
                raise ValueError(
                    "int8 scoring has its own precision and layout: "
                    "leave mixed_precision and channels_last unset"
                )
            # The compiled int8 graph takes NCHW fp32 input; its kernels pick their own layout.
            return cls(use_bf16=False, channels_last=False, batch_size=batch_size, int8=True)
        # ---- bf16 autocast: CUDA, and CPUs with native bf16 (~2-3x faster convs); fp32 elsewhere ----
        return cls(
            use_bf16=(fast_path or cpu_has_fast_bf16()) if mixed_precision is None else mixed_precision,
            channels_last=True if channels_last is None else channels_last,
            batch_size=batch_size,
        )


def classify(model: Classifier, images: torch.Tensor, settings: ComputeSettings) -> torch.Tensor:
    """Logits of a batch of NCHW [0, 1] images, in the settings' layout and precision."""
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    batch = images.contiguous(memory_format=layout)
    # ---- bf16 autocast: CUDA and CPUs with native bf16 (see ComputeSettings.resolve) ----
    with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=settings.use_bf16):
        return model(batch)


@contextmanager
def prepared(model: nn.Module, device: torch.device, settings: ComputeSettings) -> Iterator[None]:
    """The model on `device`, in eval mode and the settings' layout (restored on exit)."""
    # Weights moved or re-laid-out under inference mode would become inference tensors that
    # later training cannot use: prepare the model with autograd-capable tensors.
    with torch.inference_mode(False):
        model.to(device)
    model.eval()
    with _memory_format(model, torch.channels_last if settings.channels_last else None):
        yield


@contextmanager
def _memory_format(model: nn.Module, memory_format: torch.memory_format | None) -> Iterator[None]:
    """Lay the model's 4-D weights out in `memory_format` (None: leave them) and restore the layout after."""
    convolution_weights = [p for p in model.parameters() if p.dim() == 4]
    if memory_format is None or not convolution_weights:
        yield
        return
    was_channels_last = convolution_weights[0].is_contiguous(memory_format=torch.channels_last) and not (
        convolution_weights[0].is_contiguous()
    )
    with torch.inference_mode(False):
        model.to(memory_format=memory_format)
    try:
        yield
    finally:
        with torch.inference_mode(False):
            model.to(memory_format=torch.channels_last if was_channels_last else torch.contiguous_format)


def int8_copy(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    seed: int,
    batch_size: int,
) -> Classifier:
    """The model quantized on one noisy copy each of up to 256 examples spread over the whole set."""
    picked = np.unique(
        np.linspace(0, len(images_uint8_nhwc) - 1, INT8_CALIBRATION_IMAGES).round().astype(np.int64)
    )
    clean = torch.from_numpy(images_uint8_nhwc[picked]).permute(0, 3, 1, 2).float().div_(255.0)
    sigmas = torch.from_numpy(sigmas_of_indices(np.asarray(sigma_indices)[picked])).view(-1, 1, 1, 1)
    generator = torch.Generator().manual_seed(derive_seed(seed, _CALIBRATION_STREAM))
    noisy = (clean + sigmas * torch.randn(clean.shape, generator=generator)).clamp_(0.0, 1.0)
    return quantize_for_cpu(model, noisy, batch_size=batch_size)
