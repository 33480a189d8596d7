"""Which torch device a job runs on."""

from __future__ import annotations

import torch

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` (or `cuda:N`) without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but no CUDA GPU is available here")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}: expected one of {', '.join(DEVICE_NAMES)} (or cuda:N)")


def uses_cuda_fast_path(device: torch.device) -> bool:
    """True on CUDA, where training, evaluation and the oracle use bf16 autocast and channels-last."""
    return device.type == "cuda"


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic: AVX-512 BF16 (Zen 4+, Cooper Lake+) or AMX tiles
    (Sapphire Rapids+). There oneDNN's bf16 convolutions run ~2x (AVX-512) to ~3x (AMX) faster
    than fp32 (docs/engine.md); elsewhere bf16 is emulated and slower, so it stays off."""
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16", False) or capabilities.get("amx_bf16", False))
