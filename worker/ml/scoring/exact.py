"""Batched Eq. 5 scoring: `score_examples`, all M draws per example (exact) or staged (adaptive.py).

For example i with ladder index σ_i: draw M noisy copies clip(x_i + σ_i·ε, 0, 1) (draws.py),
classify them, p_k = share of copies predicted as class k, H_i = −Σ_k p_k ln p_k (nats). The
baselines come with it: the softmax entropy of the clean image and the mean softmax entropy
over the noisy copies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.quantization import Classifier
from worker.ml.scoring.adaptive import AdaptiveConfig, undecided
from worker.ml.scoring.compute import ComputeSettings, classify, int8_copy, prepared
from worker.ml.scoring.draws import BatchedClassifier, device_inputs, draw_phase
from worker.ml.scoring.scores import Scores, class_counts, histogram_entropy, softmax_entropy

Progress = Callable[[int, int], None]


@torch.inference_mode()
def score_examples(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    *,
    draws: int,  # M, the caller's (a project's or a simulation's setting)
    seed: int,
    device: torch.device,
    batch_size: int | None = None,
    adaptive: bool = False,
    adaptive_config: AdaptiveConfig | None = None,
    progress: Progress | None = None,
    start: int = 0,
    stop: int | None = None,
    mixed_precision: bool | None = None,
    channels_last: bool | None = None,
    int8: bool = False,
) -> Scores:
    """Eq. 5's H plus clean- and noise-uncertainty for examples [start, stop) (default: all).

    batch_size is in noisy images per forward pass (default: 64 on CPU, 8192 on CUDA).
    mixed_precision (bf16 autocast) defaults to on for CUDA and for CPUs with native bf16
    (AVX-512 BF16 or AMX), off otherwise; channels_last defaults to on (oneDNN's and cuDNN's
    fast layout). Pass both False for fp32 NCHW. int8 (CPU only, worker/ml/quantization.py)
    classifies with a static int8 copy of the model calibrated on noisy copies of up to 256
    examples spread over the whole set (so shards calibrate alike): ~2x bf16's speed for
    ResNet18, after 3-13 s of quantizing and compiling per call — for large runs.
    The model is moved to `device` and put in eval mode; its memory layout is restored on
    return (a CPU model trains faster in NCHW). Returned arrays cover [start, stop).
    """
    num_examples = len(images_uint8_nhwc)
    stop = num_examples if stop is None else stop
    if images_uint8_nhwc.ndim != 4 or images_uint8_nhwc.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images (N, H, W, C), got {images_uint8_nhwc.dtype} {images_uint8_nhwc.shape}"
        )
    if len(sigma_indices) != num_examples:
        raise ValueError(f"{num_examples} images but {len(sigma_indices)} σ indices")
    if not 0 <= start <= stop <= num_examples:
        raise ValueError(f"shard [{start}, {stop}) is not inside the {num_examples} examples")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    settings = ComputeSettings.resolve(device, batch_size, mixed_precision, channels_last, int8)
    stages = (adaptive_config or AdaptiveConfig()).stages_before(draws) if adaptive else ()
    with prepared(model, device, settings):
        classifier: Classifier = (
            int8_copy(model, images_uint8_nhwc, sigma_indices, seed, settings.batch_size)
            if settings.int8
            else model
        )
        return _score(
            classifier,
            images_uint8_nhwc,
            sigma_indices,
            draws=draws,
            seed=seed,
            device=device,
            settings=settings,
            stages=stages,
            progress=progress,
            start=start,
            stop=stop,
        )


def _score(
    model: Classifier,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    *,
    draws: int,
    seed: int,
    device: torch.device,
    settings: ComputeSettings,
    stages: tuple[tuple[int, int], ...],
    progress: Progress | None,
    start: int,
    stop: int,
) -> Scores:

    shard_size = stop - start
    if shard_size == 0:
        empty = np.zeros(0, dtype=np.float64)
        return Scores(
            empty,
            empty.copy(),
            empty.copy(),
            0,
            np.zeros(0, dtype=np.int64),
            draws,
            np.zeros((0, 1), dtype=np.int64),
        )
    images, sigmas, image_shape = device_inputs(images_uint8_nhwc, sigma_indices, start, stop, device)
    predictions = torch.full((shard_size, draws), -1, dtype=torch.int32, device=device)
    entropies = torch.zeros((shard_size, draws), dtype=torch.float32, device=device)

    planned = shard_size * draws
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, planned)

    classifier = BatchedClassifier(model, settings, predictions, entropies, advance)
    generator = torch.Generator(device=device)
    active = torch.ones(shard_size, dtype=torch.bool, device=device)
    drawn_so_far = 0
    for stage_draws, max_minority in stages:
        draw_phase(
            classifier, images, sigmas, active, start, drawn_so_far, stage_draws, seed, image_shape, generator
        )
        classifier.finish()  # the stopping rule reads every prediction of this stage
        active &= undecided(predictions, stage_draws, max_minority)
        drawn_so_far = stage_draws
        planned = done + int(active.sum().item()) * (draws - drawn_so_far)
    draw_phase(classifier, images, sigmas, active, start, drawn_so_far, draws, seed, image_shape, generator)
    classifier.finish()

    clean = _clean_uncertainty(model, images, settings)
    draws_used = (predictions >= 0).sum(dim=1)
    counts = class_counts(predictions)
    noise_uncertainty = entropies.double().sum(dim=1) / draws_used.clamp(min=1).double()
    return Scores(
        entropy=histogram_entropy(counts.cpu().numpy()),
        clean_uncertainty=clean.double().cpu().numpy(),
        noise_uncertainty=noise_uncertainty.cpu().numpy(),
        forward_passes=classifier.classified,
        draws_used=draws_used.cpu().numpy().astype(np.int64),
        draws=draws,
        class_counts=counts.cpu().numpy(),
    )


def _clean_uncertainty(model: Classifier, images: torch.Tensor, settings: ComputeSettings) -> torch.Tensor:
    results = []
    for begin in range(0, len(images), settings.batch_size):
        batch = images[begin : begin + settings.batch_size].permute(0, 3, 1, 2).float().div_(255.0)
        results.append(softmax_entropy(classify(model, batch, settings)))
    return torch.cat(results) if results else torch.zeros(0, device=images.device)
