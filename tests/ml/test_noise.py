"""Gaussian pixel noise: clipped, seeded, on the images' device; seeds derived from keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.ml.device import resolve_device
from worker.ml.noise import add_gaussian_noise, derive_seed, make_generator, sigmas_of_indices


def _grey_images(count: int = 8, value: float = 0.5) -> torch.Tensor:
    return torch.full((count, 3, 6, 6), value)


def test_noise_is_clipped_to_unit_interval() -> None:
    images = torch.rand((16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noisy = add_gaussian_noise(
        images, torch.full((16,), 0.9), generator=make_generator(torch.device("cpu"), 1)
    )
    assert noisy.shape == images.shape
    assert noisy.min().item() == 0.0 and noisy.max().item() == 1.0  # σ 0.9 certainly hits both bounds
    assert torch.all((noisy >= 0) & (noisy <= 1))


def test_same_seed_same_noise_different_seed_different_noise() -> None:
    images, sigmas = _grey_images(), torch.full((8,), 0.2)
    first = add_gaussian_noise(images, sigmas, generator=make_generator(torch.device("cpu"), 7))
    again = add_gaussian_noise(images, sigmas, generator=make_generator(torch.device("cpu"), 7))
    other = add_gaussian_noise(images, sigmas, generator=make_generator(torch.device("cpu"), 8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_noise_scale_follows_each_examples_sigma() -> None:
    images = _grey_images(count=3)
    sigmas = torch.tensor([0.0, 0.05, 0.1])
    noisy = add_gaussian_noise(images, sigmas, generator=make_generator(torch.device("cpu"), 3))
    deviations = (noisy - images).flatten(1).std(dim=1)
    assert torch.equal(noisy[0], images[0])  # σ = 0 leaves the image untouched
    assert deviations[1].item() == pytest.approx(0.05, rel=0.25)
    assert deviations[2].item() == pytest.approx(0.10, rel=0.25)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="sigmas"):
        add_gaussian_noise(_grey_images(4), torch.zeros(3), generator=torch.Generator())


def test_derive_seed_depends_on_every_key_and_their_order() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    seeds = {
        derive_seed(1, 2, 3),
        derive_seed(1, 3, 2),
        derive_seed(2, 2, 3),
        derive_seed(1, 2),
        derive_seed(1),
    }
    assert len(seeds) == 5
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_sigmas_of_indices_uses_the_ladder() -> None:
    assert sigmas_of_indices(np.array([0, 5, 90])).tolist() == pytest.approx([0.0, 0.05, 0.9])
    with pytest.raises(ValueError, match="ladder"):
        sigmas_of_indices(np.array([91]))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_noise_is_made_on_the_cuda_device() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    device = torch.device("cuda")
    images = _grey_images().to(device)
    first = add_gaussian_noise(
        images, torch.full((8,), 0.2, device=device), generator=make_generator(device, 5)
    )
    again = add_gaussian_noise(
        images, torch.full((8,), 0.2, device=device), generator=make_generator(device, 5)
    )
    assert first.device.type == "cuda"
    assert torch.equal(first, again)
