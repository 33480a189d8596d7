"""Gaussian pixel noise clip(x + σ·ε, 0, 1) and the seeds that make it reproducible.

Every random draw in worker/ml comes from an explicit `torch.Generator` seeded through
`derive_seed`, so a result depends only on (seed, what is being drawn), never on global
state, batch sizes or how work is split between workers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, LADDER_STEP

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    # SplitMix64 finaliser: a cheap, well-mixed 64-bit hash (Steele et al. 2014).
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that depends on `seed` and every key, in order (e.g. seed, example block, draw block)."""
    state = _splitmix64(seed & _MASK64)
    for key in keys:
        state = _splitmix64(state ^ (key & _MASK64))
    return state >> 1  # torch.Generator.manual_seed accepts 64 bits; 63 keeps it positive everywhere


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (CUDA noise must come from a CUDA generator) seeded with `seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def sigmas_of_indices(sigma_indices: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Vectorised `aqpl.ladder.sigma_of`: σ = index · 0.01; raises ValueError outside the ladder."""
    indices = np.asarray(sigma_indices)
    if indices.size and (indices.min() < LADDER_MIN_INDEX or indices.max() > LADDER_MAX_INDEX):
        raise ValueError(
            f"σ indices must lie on the ladder {LADDER_MIN_INDEX}..{LADDER_MAX_INDEX}, "
            f"got values from {indices.min()} to {indices.max()}"
        )
    return (indices.astype(np.float64) * LADDER_STEP).astype(np.float32)


def add_gaussian_noise(
    images: torch.Tensor, sigmas: torch.Tensor, *, generator: torch.Generator
) -> torch.Tensor:
    """clip(x + σ_i·ε, 0, 1) with ε ~ N(0, I) drawn on images.device from `generator`.

    images: float (N, C, H, W) in [0, 1]; sigmas: (N,) noise standard deviations in pixel units.
    """
    if images.dim() != 4 or sigmas.shape != (images.shape[0],):
        shapes = f"{tuple(images.shape)} and {tuple(sigmas.shape)}"
        raise ValueError(f"expected images (N, C, H, W) and sigmas (N,), got {shapes}")
    epsilon = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    scale = sigmas.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)
    return (images + scale * epsilon).clamp_(0.0, 1.0)
