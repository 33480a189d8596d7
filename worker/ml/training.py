"""Training from per-example noise levels (the paper's Eq. 2) and the methods built on it.

Every example i carries a ladder index σ_i. Each batch is split at random: a
`noisy_fraction` of it is replaced by clip(x_i + σ_i·ε, 0, 1), the rest stays clean
(GNT, Rusak et al. 2020), and the model minimises the cross-entropy on the mix.

Methods: standard (σ_i = 0), gnt (one σ for all), cat (σ_i adapted during training),
aqpl-gnt / aqpl-cat (start from gnt / cat levels, then corrected by queries in simulate.py).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as functional
from torch import nn

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, LADDER_STEP
from worker.ml.device import uses_cuda_fast_path
from worker.ml.noise import add_gaussian_noise, derive_seed, make_generator

METHODS = ("standard", "gnt", "cat", "aqpl-gnt", "aqpl-cat")

# GNT's single σ per dataset family, as ladder indices. Grey digits stay legible far into
# the noise (σ 0.5 is Rusak et al.'s ImageNet choice and leaves MNIST strokes readable);
# natural 32x32 colour images lose their content much earlier, so CIFAR-10 uses σ 0.10,
# the strongest Gaussian severity of CIFAR-10-C.
GNT_SIGMA_INDEX_BY_FAMILY: dict[str, int] = {"mnist": 50, "digits": 50, "cifar10": 10}
GNT_DEFAULT_SIGMA_INDEX = 50  # the MNIST-family value; prefer gnt_sigma_index(dataset name, channels)
_GNT_COLOUR_SIGMA_INDEX = 10  # unknown colour datasets: treat like CIFAR-10

Progress = Callable[[int, int], None]

# Independent random streams of one training run, mixed into the seed by derive_seed.
_ORDER_STREAM = 1
_NOISE_STREAM = 2
_CAT_STREAM = 3
_AUGMENT_STREAM = 4
AUGMENTATIONS = ("none", "crop-flip")
_CROP_PADDING = 4  # pixels of zero padding around the image before a random crop (the CIFAR recipe)
_PROBE_BATCH = 1024  # examples per forward pass of CAT's no-grad probe


@dataclass(frozen=True)
class TrainConfig:
    # No defaults for what a run's caller chooses (the project's settings, the simulation's): one
    # place declares each (backend/projects/config.py, simulate/config.py), none is restated here.
    epochs: int  # passes over the training set
    batch_size: int  # examples per SGD step (half of them perturbed, see noisy_fraction)
    lr: float  # peak SGD learning rate; cosine-annealed to 0 over the run
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2 on all parameters, the usual CIFAR ResNet value
    noisy_fraction: float = (
        0.5  # GNT: half of each batch is perturbed, half stays clean (keeps clean accuracy)
    )
    lr_schedule: str = "cosine"  # "cosine" (per step, to 0) or "constant"
    seed: int = 0  # batch order, which half is noisy, and the noise itself
    bf16_autocast: bool = True  # CUDA only: bfloat16 autocast for the forward pass; ignored on CPU
    channels_last: bool = True  # NHWC memory layout for conv speed (CPU and CUDA)
    # "crop-flip": random crop after 4-pixel zero padding and a horizontal flip (He et al.'s CIFAR
    # recipe), drawn before the noise; "none" for digits, whose left and right are not interchangeable.
    augment: str = "none"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 2:
            raise ValueError("epochs must be >= 0 and batch_size >= 2 (BatchNorm needs two examples)")
        if not 0.0 <= self.noisy_fraction <= 1.0:
            raise ValueError(f"noisy_fraction must be in [0, 1], got {self.noisy_fraction}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")


@dataclass(frozen=True)
class CATConfig:
    """CAT's per-example σ schedule (after Cheng et al. 2020's customised adversarial training).

    After every epoch from the warm-up on, each example is tested once: the model (eval mode)
    classifies one fresh noisy copy at its current σ_i. Right: σ_i goes up one step; wrong:
    down one step, within [min_index, max_index]. An example's step doubles (to max_step)
    while it keeps moving the same way and halves (to min_step) when it turns, so σ_i finds
    the level the model can just handle in a few epochs from any start, then hovers there.
    """

    step: int = 4  # first move, in ladder indices (σ 0.04)
    max_step: int = 16  # cap of the doubling: from σ 0, ~5 epochs reach the top of the ladder
    min_step: int = 1  # finest move once an example oscillates around its level
    warmup_epochs: int = 1  # an untrained model's mistakes say nothing about σ: adapt after this many epochs
    min_index: int = LADDER_MIN_INDEX
    max_index: int = LADDER_MAX_INDEX

    def __post_init__(self) -> None:
        if not 1 <= self.min_step <= self.step <= self.max_step:
            raise ValueError(f"CAT steps need 1 <= min_step <= step <= max_step, got {self}")
        if not LADDER_MIN_INDEX <= self.min_index <= self.max_index <= LADDER_MAX_INDEX:
            raise ValueError(f"CAT bounds {self.min_index}..{self.max_index} must lie on the ladder")


@dataclass(frozen=True)
class TrainResult:
    epoch_losses: tuple[float, ...]  # mean cross-entropy (nats) over each epoch's batches
    steps: int  # SGD steps taken
    examples_seen: int  # examples processed (clean and noisy)
    seconds: float  # wall-clock time

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else math.nan


def gnt_sigma_index(dataset_name: str, in_channels: int | None = None) -> int:
    """GNT's default ladder index for a dataset: by family name, else by channel count."""
    family = dataset_name.lower()
    for name, index in GNT_SIGMA_INDEX_BY_FAMILY.items():
        if family.startswith(name):
            return index
    return _GNT_COLOUR_SIGMA_INDEX if in_channels == 3 else GNT_DEFAULT_SIGMA_INDEX


def starting_sigma_indices(method: str, num_examples: int, *, gnt_index: int) -> npt.NDArray[np.int64]:
    """σ_i before training: 0 for standard; the GNT level for gnt, cat and both AQPL variants."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    level = 0 if method == "standard" else gnt_index
    return np.full(num_examples, level, dtype=np.int64)


def to_tensor(images: npt.NDArray[np.uint8]) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW tensor in [0, 1] (what a batch is before it is perturbed)."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, H, W, C) images, got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def crop_and_flip(images: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of the zero-padded image (same size) and a flip with probability 1/2.

    images: float (N, C, H, W); the offsets and flips come from `generator` (CPU), so two runs with
    the same seed augment alike whatever their σ.
    """
    count, _, height, width = images.shape
    offsets = torch.randint(0, 2 * _CROP_PADDING + 1, (2, count), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    padded = functional.pad(images, (_CROP_PADDING,) * 4)
    offsets = offsets.to(images.device)
    rows = (offsets[0].view(-1, 1) + torch.arange(height, device=images.device)).view(count, 1, height, 1)
    cols = (offsets[1].view(-1, 1) + torch.arange(width, device=images.device)).view(count, 1, 1, width)
    batch = torch.arange(count, device=images.device).view(count, 1, 1, 1)
    channel = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    cropped = padded[batch, channel, rows, cols]
    return torch.where(flips.to(images.device).view(-1, 1, 1, 1), cropped.flip(3), cropped)


def noisy_half_mask(batch_size: int, noisy_fraction: float, *, generator: torch.Generator) -> torch.Tensor:
    """Boolean (batch_size,) CPU mask, exactly round(noisy_fraction · batch_size) True at random places."""
    count = round(noisy_fraction * batch_size)
    mask = torch.zeros(batch_size, dtype=torch.bool)
    mask[torch.randperm(batch_size, generator=generator)[:count]] = True
    return mask


def perturb_half_batch(
    images: torch.Tensor,
    sigmas: torch.Tensor,
    noisy_fraction: float,
    *,
    mask_generator: torch.Generator,
    noise_generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2's input: a random `noisy_fraction` of the batch perturbed at its σ; returns (batch, mask)."""
    mask = noisy_half_mask(images.shape[0], noisy_fraction, generator=mask_generator).to(images.device)
    effective_sigmas = torch.where(mask, sigmas.to(images.device, torch.float32), 0.0)
    return add_gaussian_noise(images, effective_sigmas, generator=noise_generator), mask


@contextlib.contextmanager
def _deterministic_on_cpu(device: torch.device) -> Iterator[None]:
    # Cheap on CPU; on CUDA it would need CUBLAS_WORKSPACE_CONFIG and slower kernels.
    if device.type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _validate(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.integer], sigma_indices: npt.ArrayLike
) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    sigmas = np.asarray(sigma_indices)
    if not (len(images) == len(labels) == len(sigmas)):
        raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(sigmas)} σ indices must match")
    if sigmas.size and (sigmas.min() < LADDER_MIN_INDEX or sigmas.max() > LADDER_MAX_INDEX):
        raise ValueError(f"σ indices must lie on the ladder {LADDER_MIN_INDEX}..{LADDER_MAX_INDEX}")


def _run(
    model: nn.Module,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    sigma_state: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    progress: Progress | None,
    cat: CATConfig | None,
) -> TrainResult:
    started = time.perf_counter()
    fast_path = uses_cuda_fast_path(device)
    # bf16 autocast on CUDA only; channels-last everywhere (oneDNN's CPU convolutions are NHWC-native:
    # the small CNN trains ~3x faster on these CPUs). The caller's layout is restored at the end.
    use_bf16 = fast_path and config.bf16_autocast
    use_channels_last = config.channels_last
    model.to(device)
    if use_channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()

    num_examples = len(images)
    images_on_device = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    labels_on_device = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    order_generator = torch.Generator().manual_seed(derive_seed(config.seed, _ORDER_STREAM))
    noise_generator = make_generator(device, derive_seed(config.seed, _NOISE_STREAM))
    augment_generator = torch.Generator().manual_seed(derive_seed(config.seed, _AUGMENT_STREAM))

    batch_starts = list(range(0, num_examples, config.batch_size))
    if batch_starts and num_examples - batch_starts[-1] < 2:
        batch_starts.pop()  # a last batch of one example would break BatchNorm in train mode
    total_steps = config.epochs * len(batch_starts)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )

    cat_state = (
        None
        if cat is None
        else _CATState(cat, sigma_state, make_generator(device, derive_seed(config.seed, _CAT_STREAM)))
    )
    epoch_losses: list[float] = []
    step = 0
    examples_seen = 0
    with _deterministic_on_cpu(device):
        for epoch in range(config.epochs):
            order = torch.randperm(num_examples, generator=order_generator)
            loss_sum = torch.zeros((), device=device)
            for batch_start in batch_starts:
                if config.lr_schedule == "cosine":
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
                batch_index = order[batch_start : batch_start + config.batch_size].to(device)
                # uint8 NHWC -> float NCHW; the permuted view is already channels-last in memory.
                batch = images_on_device[batch_index].permute(0, 3, 1, 2).float().div_(255.0)
                if config.augment == "crop-flip":
                    batch = crop_and_flip(batch, generator=augment_generator)
                batch = batch.contiguous(
                    memory_format=torch.channels_last if use_channels_last else torch.contiguous_format
                )
                batch_labels = labels_on_device[batch_index]
                sigmas = sigma_state[batch_index].to(torch.float32) * LADDER_STEP
                noisy_batch, _ = perturb_half_batch(
                    batch,
                    sigmas,
                    config.noisy_fraction,
                    mask_generator=order_generator,
                    noise_generator=noise_generator,
                )
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(noisy_batch)
                loss = functional.cross_entropy(logits.float(), batch_labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                loss_sum += loss.detach()
                step += 1
                examples_seen += len(batch_index)
                if progress is not None:
                    progress(step, total_steps)
            epoch_losses.append(float(loss_sum.item()) / max(len(batch_starts), 1))
            if cat_state is not None and epoch + 1 >= cat_state.config.warmup_epochs:
                probe = _probe_noisy_copies(
                    model, images_on_device, labels_on_device, sigma_state, cat_state.generator, use_bf16
                )
                cat_state.update(sigma_state, probe)
                model.train()
    if use_channels_last and not fast_path:
        model.to(memory_format=torch.contiguous_format)  # safetensors and later NCHW callers want it
    model.eval()
    return TrainResult(tuple(epoch_losses), step, examples_seen, time.perf_counter() - started)


class _CATState:
    """Per-example step sizes and last move directions of CATConfig's schedule."""

    def __init__(self, config: CATConfig, sigma_state: torch.Tensor, generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator
        self.steps = torch.full_like(sigma_state, config.step)
        self.last_direction = torch.zeros_like(sigma_state)

    def update(self, sigma_state: torch.Tensor, correct: torch.Tensor) -> None:
        config = self.config
        direction = torch.where(correct, 1, -1).to(sigma_state.dtype)
        turned = (self.last_direction != 0) & (direction != self.last_direction)
        kept_going = self.last_direction == direction
        halved = torch.clamp(self.steps // 2, min=config.min_step)
        doubled = torch.clamp(self.steps * 2, max=config.max_step)
        self.steps = torch.where(turned, halved, torch.where(kept_going, doubled, self.steps))
        sigma_state.copy_((sigma_state + direction * self.steps).clamp_(config.min_index, config.max_index))
        self.last_direction = direction


@torch.inference_mode()
def _probe_noisy_copies(
    model: nn.Module,
    images_on_device: torch.Tensor,
    labels_on_device: torch.Tensor,
    sigma_state: torch.Tensor,
    generator: torch.Generator,
    use_bf16: bool,
) -> torch.Tensor:
    """Whether the model (eval mode) classifies one fresh noisy copy of each example correctly."""
    model.eval()
    results = []
    for start in range(0, len(images_on_device), _PROBE_BATCH):
        batch = images_on_device[start : start + _PROBE_BATCH].permute(0, 3, 1, 2).float().div_(255.0)
        sigmas = sigma_state[start : start + _PROBE_BATCH].to(torch.float32) * LADDER_STEP
        noisy = add_gaussian_noise(batch.contiguous(), sigmas, generator=generator)
        with torch.autocast(device_type=images_on_device.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            predictions = model(noisy).argmax(dim=1)
        results.append(predictions == labels_on_device[start : start + _PROBE_BATCH])
    return torch.cat(results) if results else torch.zeros(0, dtype=torch.bool, device=sigma_state.device)


def train_model(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    sigma_indices: npt.NDArray[np.integer],
    config: TrainConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> TrainResult:
    """Minimise Eq. 2 with per-example ladder indices σ_i; fine-tuning = calling it on a trained model.

    The model is moved to `device` and left in eval mode. On CPU the run is deterministic for
    a given config.seed (and thread count).
    """
    _validate(images_uint8_nhwc, labels, sigma_indices)
    sigma_state = torch.from_numpy(np.asarray(sigma_indices, dtype=np.int64).copy()).to(device)
    return _run(model, images_uint8_nhwc, labels, sigma_state, config, device, progress, cat=None)


def train_cat(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    initial_sigma_indices: npt.NDArray[np.integer],
    config: TrainConfig,
    cat_config: CATConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[TrainResult, npt.NDArray[np.int64]]:
    """Train like `train_model` while adapting each σ_i (see CATConfig); returns the adapted indices."""
    _validate(images_uint8_nhwc, labels, initial_sigma_indices)
    initial = np.clip(
        np.asarray(initial_sigma_indices, dtype=np.int64), cat_config.min_index, cat_config.max_index
    )
    sigma_state = torch.from_numpy(initial.copy()).to(device)
    result = _run(model, images_uint8_nhwc, labels, sigma_state, config, device, progress, cat=cat_config)
    return result, sigma_state.cpu().numpy().astype(np.int64)
