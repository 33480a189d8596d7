"""Eq. 2 training: loss goes down, runs are seeded, half of each batch is noisy, CAT adapts σ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.ml.models import build_model, spec_for_images
from worker.ml.noise import make_generator
from worker.ml.training import (
    GNT_DEFAULT_SIGMA_INDEX,
    METHODS,
    CATConfig,
    TrainConfig,
    crop_and_flip,
    gnt_sigma_index,
    noisy_half_mask,
    perturb_half_batch,
    starting_sigma_indices,
    to_tensor,
    train_cat,
    train_model,
)

CPU = torch.device("cpu")


def _bright_or_dark(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8x8 grey images: class 0 dark (~0.2), class 1 bright (~0.8), with a little pixel noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    levels = np.where(labels == 1, 0.8, 0.2)[:, None, None, None]
    pixels = np.clip(levels + rng.normal(0, 0.05, (count, 8, 8, 1)), 0, 1)
    return (pixels * 255).round().astype(np.uint8), labels.astype(np.int64)


def _model(images: np.ndarray, seed: int = 0) -> torch.nn.Module:
    return build_model(spec_for_images(images, 2, "small_cnn"), seed=seed)


def test_training_lowers_the_loss() -> None:
    images, labels = _bright_or_dark(64)
    model = _model(images)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05, seed=0)
    result = train_model(model, images, labels, np.full(64, 10), config, device=CPU)
    assert result.steps == 16 and result.examples_seen == 256
    assert len(result.epoch_losses) == 4
    assert result.final_loss < 0.5 * result.epoch_losses[0]
    assert not model.training  # left in eval mode
    with torch.inference_mode():
        predictions = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).argmax(1)
    assert (predictions.numpy() == labels).mean() == 1.0


def test_training_is_deterministic_on_cpu_for_a_seed() -> None:
    images, labels = _bright_or_dark(40)
    sigmas = np.full(40, 30)
    weights = []
    for seed in (3, 3, 4):
        model = _model(images)
        train_model(
            model, images, labels, sigmas, TrainConfig(epochs=2, batch_size=8, lr=0.05, seed=seed), device=CPU
        )
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(weights[0]["backbone.0.weight"], weights[2]["backbone.0.weight"])
    assert not torch.are_deterministic_algorithms_enabled()  # the global flag is restored


def test_progress_reports_every_step() -> None:
    images, labels = _bright_or_dark(20)
    calls: list[tuple[int, int]] = []
    config = TrainConfig(epochs=2, batch_size=8, lr=0.05)
    train_model(
        _model(images),
        images,
        labels,
        np.zeros(20),
        config,
        device=CPU,
        progress=lambda d, t: calls.append((d, t)),
    )
    # 20 examples in batches of 8: 8, 8, 4 -> three steps per epoch
    assert calls == [(step, 6) for step in range(1, 7)]


def test_half_of_each_batch_is_perturbed() -> None:
    images = torch.full((64, 1, 4, 4), 0.5)
    noisy, mask = perturb_half_batch(
        images,
        torch.full((64,), 0.3),
        0.5,
        mask_generator=torch.Generator().manual_seed(0),
        noise_generator=make_generator(CPU, 1),
    )
    changed = (noisy != images).flatten(1).any(dim=1)
    assert int(mask.sum()) == 32
    assert torch.equal(changed, mask)  # exactly the masked half differs, the other half is clean
    other_mask = noisy_half_mask(64, 0.5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(mask, other_mask)  # which half is random
    assert int(noisy_half_mask(10, 0.25, generator=torch.Generator()).sum()) == 2  # round(2.5) = 2


def test_noisy_fraction_zero_trains_on_clean_images_only() -> None:
    images = torch.rand((16, 1, 4, 4))
    noisy, mask = perturb_half_batch(
        images,
        torch.full((16,), 0.5),
        0.0,
        mask_generator=torch.Generator(),
        noise_generator=torch.Generator(),
    )
    assert not mask.any() and torch.equal(noisy, images)


def test_cat_raises_sigma_for_easy_examples_and_lowers_it_for_hard_ones() -> None:
    images, labels = _bright_or_dark(96, seed=1)
    hard = np.zeros(96, dtype=bool)
    hard[::10] = True  # these labels contradict the image: the model keeps getting them wrong
    labels = np.where(hard, 1 - labels, labels)
    start = np.full(96, 30)
    config = TrainConfig(epochs=6, batch_size=16, lr=0.05, seed=0)
    result, adapted = train_cat(_model(images), images, labels, start, config, CATConfig(), device=CPU)
    assert adapted.dtype == np.int64 and adapted.shape == (96,)
    assert adapted.min() >= 0 and adapted.max() <= 90
    assert adapted[~hard].mean() > 40
    assert adapted[hard].mean() < 20
    assert result.steps == 36


def test_cat_respects_its_bounds() -> None:
    images, labels = _bright_or_dark(32)
    cat = CATConfig(step=8, max_step=16, min_index=20, max_index=50)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    _, adapted = train_cat(_model(images), images, labels, np.full(32, 90), config, cat, device=CPU)
    assert adapted.min() >= 20 and adapted.max() <= 50


def test_invalid_inputs_are_rejected() -> None:
    images, labels = _bright_or_dark(8)
    config = TrainConfig(epochs=10, batch_size=128, lr=0.05)
    with pytest.raises(ValueError, match="must match"):
        train_model(_model(images), images, labels, np.zeros(7), config, device=CPU)
    with pytest.raises(ValueError, match="ladder"):
        train_model(_model(images), images, labels, np.full(8, 91), config, device=CPU)
    with pytest.raises(ValueError, match="noisy_fraction"):
        TrainConfig(epochs=10, batch_size=128, lr=0.05, noisy_fraction=1.5)
    with pytest.raises(ValueError, match="CAT steps"):
        CATConfig(step=0)


def test_method_levels_and_gnt_defaults() -> None:
    assert METHODS == ("standard", "gnt", "cat", "aqpl-gnt", "aqpl-cat")
    assert starting_sigma_indices("standard", 3, gnt_index=50).tolist() == [0, 0, 0]
    assert starting_sigma_indices("aqpl-gnt", 2, gnt_index=50).tolist() == [50, 50]
    assert gnt_sigma_index("mnist") == GNT_DEFAULT_SIGMA_INDEX == 50
    assert gnt_sigma_index("cifar10") == 10
    assert gnt_sigma_index("my_photos.npz", in_channels=3) == 10
    with pytest.raises(ValueError, match="unknown method"):
        starting_sigma_indices("mixup", 1, gnt_index=0)


@pytest.mark.gpu
def test_cuda_path_with_bf16_and_channels_last_trains() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    images, labels = _bright_or_dark(64)
    model = _model(images)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05, bf16_autocast=True, channels_last=True)
    result = train_model(model, images, labels, np.full(64, 10), config, device=torch.device("cuda"))
    assert result.final_loss < 0.5 * result.epoch_losses[0]
    _, adapted = train_cat(
        model, images, labels, np.full(64, 10), config, CATConfig(), device=torch.device("cuda")
    )
    assert adapted.shape == (64,)


def test_crop_and_flip_shifts_within_the_padding_and_flips_about_half() -> None:
    images = torch.zeros(400, 1, 32, 32)
    images[:, :, 14:18, 2:6] = 1.0  # a bright square at the left edge
    augmented = crop_and_flip(images, generator=torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape
    # Content moves by at most 4 pixels; a flip puts the square at the right edge.
    columns = augmented.sum(dim=(1, 2)).argmax(dim=1)  # (400,) leftmost bright column
    left = (columns <= 2 + 4) & (columns >= 0)
    right = columns >= 32 - 6 - 4
    assert bool((left | right).all())
    assert 0.4 < float(right.float().mean()) < 0.6
    assert 0 < float(augmented.sum()) <= float(images.sum())  # crops may cut the square, never add
    again = crop_and_flip(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(augmented, again)


def test_training_with_augmentation_is_deterministic_and_refuses_unknown_kinds() -> None:
    images, labels = _bright_or_dark(32)
    weights = []
    for _ in range(2):
        model = _model(images)
        config = TrainConfig(epochs=1, batch_size=8, lr=0.05, seed=1, augment="crop-flip")
        train_model(model, images, labels, np.full(32, 10), config, device=CPU)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert all(p.is_contiguous() for p in model.parameters())  # NCHW again: safetensors saves it
    assert torch.equal(weights[0], weights[1])
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(epochs=10, batch_size=128, lr=0.05, augment="mixup")


def test_to_tensor_is_nchw_float_in_unit_range() -> None:
    images = np.array([[[[0, 255, 51]], [[1, 2, 3]]]], dtype=np.uint8)  # (1, 2, 1, 3)
    tensor = to_tensor(images)
    assert tensor.shape == (1, 3, 2, 1) and tensor.dtype == torch.float32
    assert tensor[0, 1, 0, 0].item() == pytest.approx(1.0)
    assert tensor[0, 2, 0, 0].item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="expected uint8"):
        to_tensor(images.astype(np.float32))  # type: ignore[arg-type]
