"""The noisy copies that scoring classifies: ε per (seed, example, draw), classified in full batches.

Noise is a pure function of (seed, example index, draw index): it is drawn in units of
NOISE_BLOCK_EXAMPLES examples (aligned on absolute example indices) x NOISE_BLOCK_DRAWS draws,
each unit from its own generator seeded by derive_seed(seed, block, draw block). Batch size,
sharding (start/stop) and adaptive stopping therefore never change the noise an example
sees, so shards merged with `merge_scores` equal one unsharded run, and `complete_draws`
draws on with exactly the copies exact scoring would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from worker.ml.noise import derive_seed, sigmas_of_indices
from worker.ml.quantization import Classifier
from worker.ml.scoring.compute import ComputeSettings, classify
from worker.ml.scoring.scores import softmax_entropy

NOISE_BLOCK_EXAMPLES = 32  # examples per noise unit; part of the noise's definition, do not change casually
NOISE_BLOCK_DRAWS = 5  # draws per noise unit; part of the noise's definition too


def _unit_noise(
    seed: int, block: int, draw_block: int, image_shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    generator.manual_seed(derive_seed(seed, block, draw_block))
    shape = (NOISE_BLOCK_DRAWS, NOISE_BLOCK_EXAMPLES, *image_shape)
    return torch.randn(shape, generator=generator, device=generator.device)


def _block_noise(
    seed: int,
    block: int,
    first_draw: int,
    stop_draw: int,
    image_shape: tuple[int, int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """ε of draws [first_draw, stop_draw) for every example of `block`: (draws, block examples, C, H, W)."""
    first_unit = first_draw // NOISE_BLOCK_DRAWS
    stop_unit = -(-stop_draw // NOISE_BLOCK_DRAWS)
    units = [_unit_noise(seed, block, unit, image_shape, generator) for unit in range(first_unit, stop_unit)]
    noise = units[0] if len(units) == 1 else torch.cat(units)
    offset = first_unit * NOISE_BLOCK_DRAWS
    return noise[first_draw - offset : stop_draw - offset]


def example_noise(
    seed: int, example_index: int, draws: int, image_shape: tuple[int, int, int], device: torch.device
) -> torch.Tensor:
    """The ε (draws, C, H, W) that score_examples uses for this example: for references and tests."""
    generator = torch.Generator(device=device)
    block, row = divmod(example_index, NOISE_BLOCK_EXAMPLES)
    return _block_noise(seed, block, 0, draws, image_shape, generator)[:, row]


def device_inputs(
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    start: int,
    stop: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """Examples [start, stop) on `device`: uint8 NHWC images, their σ, and the (C, H, W) of one image."""
    images = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc[start:stop])).to(device)
    sigmas = torch.from_numpy(sigmas_of_indices(np.asarray(sigma_indices)[start:stop])).to(device)
    height, width, channels = images_uint8_nhwc.shape[1:]
    return images, sigmas, (int(channels), int(height), int(width))


class BatchedClassifier:
    """Collects noisy images and classifies them in full batches; records results per (example, draw)."""

    def __init__(
        self,
        model: Classifier,
        settings: ComputeSettings,
        predictions: torch.Tensor,
        entropies: torch.Tensor,
        progress: Callable[[int], None],
    ) -> None:
        self.model = model
        self.settings = settings
        self.batch_size = settings.batch_size
        self.predictions = predictions  # (n, M) int32, -1 = not drawn
        self.entropies = entropies  # (n, M) float32
        self.progress = progress
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.pending_count = 0
        self.classified = 0

    def add(self, images: torch.Tensor, rows: torch.Tensor, draws: torch.Tensor) -> None:
        self.pending.append((images, rows, draws))
        self.pending_count += len(images)
        if self.pending_count >= self.batch_size:
            self._flush(full_batches_only=True)

    def finish(self) -> None:
        self._flush(full_batches_only=False)

    def _flush(self, *, full_batches_only: bool) -> None:
        if not self.pending:
            return
        images = torch.cat([p[0] for p in self.pending]) if len(self.pending) > 1 else self.pending[0][0]
        rows = torch.cat([p[1] for p in self.pending])
        draws = torch.cat([p[2] for p in self.pending])
        usable = len(images) - len(images) % self.batch_size if full_batches_only else len(images)
        for begin in range(0, usable, self.batch_size):
            end = min(begin + self.batch_size, usable)
            self._classify(images[begin:end], rows[begin:end], draws[begin:end])
        self.pending = [(images[usable:], rows[usable:], draws[usable:])] if usable < len(images) else []
        self.pending_count = len(images) - usable

    def _classify(self, images: torch.Tensor, rows: torch.Tensor, draws: torch.Tensor) -> None:
        logits = classify(self.model, images, self.settings)
        self.predictions[rows, draws] = logits.argmax(dim=1).to(torch.int32)
        self.entropies[rows, draws] = softmax_entropy(logits)
        self.classified += len(images)
        self.progress(len(images))


def draw_phase(
    classifier: BatchedClassifier,
    images: torch.Tensor,
    sigmas: torch.Tensor,
    active: torch.Tensor,
    shard_start: int,
    first_draw: int,
    stop_draw: int,
    seed: int,
    image_shape: tuple[int, int, int],
    generator: torch.Generator,
) -> None:
    """Classify draws [first_draw, stop_draw) of every active example, block by block."""
    if stop_draw <= first_draw or not bool(active.any()):
        return
    shard_size = len(images)
    shard_stop = shard_start + shard_size
    draw_count = stop_draw - first_draw
    draw_ids = torch.arange(first_draw, stop_draw, device=images.device)
    active_rows = torch.nonzero(active).flatten().cpu().numpy() if not bool(active.all()) else None
    for block in range(shard_start // NOISE_BLOCK_EXAMPLES, math.ceil(shard_stop / NOISE_BLOCK_EXAMPLES)):
        block_start = block * NOISE_BLOCK_EXAMPLES
        lo = max(block_start, shard_start)
        hi = min(block_start + NOISE_BLOCK_EXAMPLES, shard_stop)
        if active_rows is None:
            rows = torch.arange(lo - shard_start, hi - shard_start, device=images.device)
        else:
            selected = active_rows[(active_rows >= lo - shard_start) & (active_rows < hi - shard_start)]
            if selected.size == 0:
                continue
            rows = torch.from_numpy(selected).to(images.device)
        noise = _block_noise(seed, block, first_draw, stop_draw, image_shape, generator)
        noise = noise[:, rows + (shard_start - block_start)]  # (draws, rows, C, H, W)
        clean = images[rows].permute(0, 3, 1, 2).float().div_(255.0)  # (rows, C, H, W)
        noisy = (clean.unsqueeze(0) + sigmas[rows].view(1, -1, 1, 1, 1) * noise).clamp_(0.0, 1.0)
        count = len(rows)
        classifier.add(
            noisy.reshape(draw_count * count, *image_shape),
            rows.repeat(draw_count),
            draw_ids.repeat_interleave(count),
        )
