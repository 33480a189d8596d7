"""The conformity surrogate (the paper's Eq. 5) and the two baseline uncertainty scores.

For example i with ladder index σ_i: draw M noisy copies clip(x_i + σ_i·ε, 0, 1), classify
them, p_k = share of copies predicted as class k, H_i = −Σ_k p_k ln p_k (nats). Large H: σ_i
is excessive for the model; small H: deficient.

Noise is a pure function of (seed, example index, draw index): it is drawn in units of
NOISE_BLOCK_EXAMPLES examples (aligned on absolute example indices) x NOISE_BLOCK_DRAWS draws,
each unit from its own generator seeded by derive_seed(seed, block, draw block). Batch size,
sharding (start/stop) and adaptive stopping therefore never change the noise an example
sees, so shards merged with `merge_scores` equal one unsharded run.

Adaptive mode (AdaptiveConfig): draws come in stages. At stage (n, r) an example whose n
predictions so far have at most r outside its most frequent class stops there, and its H is
the entropy of those n predictions; the rest go on, and every example left after the last
stage gets all M draws. Default stages (8, 0), (20, 2), (30, 3), (40, 4): a unanimous pilot of
8 stops, then 18 of 20, 27 of 30, 36 of 40. Error bound: for an example whose top class has
probability q on noisy copies, "some class holds >= n - r of n draws" needs the top class or
all others together to do so, so
    P(stop early) <= Σ_stages [P(Bin(n, q) >= n - r) + P(Bin(n, 1 - q) >= n - r)]
(AdaptiveConfig.early_stop_bound): 0.8 % at q = 0.5 (H >= ln 2), 2.1 % at q = 0.6, 10.5 % at
q = 0.7 — the uncertain end that AQPL sends to the oracle as "excessive" is rarely cut short.
Examples that do stop have q near 1, whose exact H is near 0 as well. They would still skew
AQPL's "deficient" side, a random pick among the many examples at H = 0: unanimous on 8
draws is a larger pool than unanimous on 50. So a selection made on adaptive scores completes
its picks (`complete_draws`, called by strategies.select) until every pick has all M draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.device import cpu_has_fast_bf16, uses_cuda_fast_path
from worker.ml.noise import derive_seed, sigmas_of_indices
from worker.ml.quantization import Classifier, quantize_for_cpu

NOISE_BLOCK_EXAMPLES = 32  # examples per noise unit; part of the noise's definition, do not change casually
NOISE_BLOCK_DRAWS = 5  # draws per noise unit; part of the noise's definition too
DEFAULT_CPU_BATCH = 64  # noisy images per forward pass on a CPU: activations stay in cache (docs/engine.md)
DEFAULT_CUDA_BATCH = 8192  # noisy images per forward pass on a GPU: large enough to saturate an H100
INT8_CALIBRATION_IMAGES = 256  # noisy images whose activation ranges set an int8 model's scales
_CALIBRATION_STREAM = 0xCA11B  # derive_seed key of the calibration noise (distinct from noise blocks)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AdaptiveConfig:
    """Staged early stopping of adaptive scoring (rule and error bound in the module docstring)."""

    # (draws so far, most draws allowed outside the top class) at which an example may stop.
    # 8 unanimous, 18 of 20, 27 of 30, 36 of 40: each stops only examples with q ≳ 0.9, which can
    # be neither among the highest H nor tied at H = 0; together they stop one with q = 0.6 with
    # probability <= 2.1 %, q = 0.7 <= 10.5 % (docs/engine.md).
    stages: tuple[tuple[int, int], ...] = ((8, 0), (20, 2), (30, 3), (40, 4))

    def __post_init__(self) -> None:
        previous = 0
        for draws, minority in self.stages:
            if draws <= previous or draws < 2:
                raise ValueError(f"adaptive stages need increasing draw counts >= 2, got {self.stages}")
            if not 0 <= minority < draws / 2:
                raise ValueError(f"a stage's minority count must be in [0, draws/2), got {(draws, minority)}")
            previous = draws

    def early_stop_bound(self, top_class_probability: float, max_draws: int | None = None) -> float:
        """Upper bound on P(stopping before max_draws) for an example whose top class has this probability."""
        q = top_class_probability
        bound = 0.0
        for draws, minority in self.stages:
            if max_draws is not None and draws >= max_draws:
                break
            bound += _binomial_upper_tail(draws, q, draws - minority)
            bound += _binomial_upper_tail(draws, 1.0 - q, draws - minority)
        return min(bound, 1.0)


def _binomial_upper_tail(trials: int, probability: float, at_least: int) -> float:
    return sum(
        math.comb(trials, k) * probability**k * (1.0 - probability) ** (trials - k)
        for k in range(at_least, trials + 1)
    )


@dataclass(frozen=True)
class Scores:
    entropy: npt.NDArray[np.float64]  # H of Eq. 5 per example, nats, in [0, ln K]
    clean_uncertainty: npt.NDArray[np.float64]  # entropy of the softmax on the clean image, nats
    noise_uncertainty: npt.NDArray[np.float64]  # mean softmax entropy over the noisy copies, nats
    forward_passes: int  # noisy images classified (clean passes are not counted)
    draws_used: npt.NDArray[np.int64] | None = None  # noisy copies per example (< M where adaptive stopped)
    draws: int | None = None  # M, the copies asked for per example
    class_counts: npt.NDArray[np.int64] | None = (
        None  # (examples, classes): predicted class of the copies drawn
    )

    def stopped_early(self) -> npt.NDArray[np.bool_]:
        """Per example: adaptive scoring drew fewer than M copies (all False where draws are not recorded)."""
        if self.draws_used is None or self.draws is None:
            return np.zeros(len(self.entropy), dtype=bool)
        stopped: npt.NDArray[np.bool_] = self.draws_used < self.draws
        return stopped


def histogram_entropy(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """−Σ p_k ln p_k over the last axis of class counts (natural log; 0 ln 0 = 0; empty rows -> 0)."""
    counts_array = np.asarray(counts, dtype=np.float64)
    totals = counts_array.sum(axis=-1, keepdims=True)
    shares = np.divide(counts_array, totals, out=np.zeros_like(counts_array), where=totals > 0)
    logs = np.log(shares, out=np.zeros_like(shares), where=shares > 0)
    entropy: npt.NDArray[np.float64] = -(shares * logs).sum(axis=-1)
    return np.maximum(entropy, 0.0)  # -0.0 and rounding below zero read as 0


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per row, nats, computed in float32."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


def merge_scores(parts: Sequence[Scores]) -> Scores:
    """Concatenate the Scores of consecutive shards (start/stop ranges in order)."""
    if not parts:
        raise ValueError("no Scores to merge")
    draws_used = [p.draws_used for p in parts]
    counts = [p.class_counts for p in parts]
    requested = {p.draws for p in parts}
    return Scores(
        entropy=np.concatenate([p.entropy for p in parts]),
        clean_uncertainty=np.concatenate([p.clean_uncertainty for p in parts]),
        noise_uncertainty=np.concatenate([p.noise_uncertainty for p in parts]),
        forward_passes=sum(p.forward_passes for p in parts),
        draws_used=None
        if any(d is None for d in draws_used)
        else np.concatenate([d for d in draws_used if d is not None]),
        draws=requested.pop() if len(requested) == 1 else None,
        class_counts=None
        if any(c is None for c in counts)
        else np.concatenate(_widen([c for c in counts if c is not None])),
    )


def _widen(counts: Sequence[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    """Class-count arrays padded with zero columns to the widest (a shard sees only classes it predicted)."""
    width = max(c.shape[1] for c in counts)
    return [np.pad(c, ((0, 0), (0, width - c.shape[1]))) for c in counts]


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


def _int8_copy(
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


@dataclass(frozen=True)
class _ComputeSettings:
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
    ) -> _ComputeSettings:
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


@contextmanager
def _prepared(model: nn.Module, device: torch.device, settings: _ComputeSettings) -> Iterator[None]:
    """The model on `device`, in eval mode and the settings' layout (restored on exit)."""
    # Weights moved or re-laid-out under inference mode would become inference tensors that
    # later training cannot use: prepare the model with autograd-capable tensors.
    with torch.inference_mode(False):
        model.to(device)
    model.eval()
    with _memory_format(model, torch.channels_last if settings.channels_last else None):
        yield


class _BatchedClassifier:
    """Collects noisy images and classifies them in full batches; records results per (example, draw)."""

    def __init__(
        self,
        model: Classifier,
        settings: _ComputeSettings,
        predictions: torch.Tensor,
        entropies: torch.Tensor,
        progress: Callable[[int], None],
    ) -> None:
        self.model = model
        self.batch_size = settings.batch_size
        self.predictions = predictions  # (n, M) int32, -1 = not drawn
        self.entropies = entropies  # (n, M) float32
        self.use_bf16 = settings.use_bf16
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
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
        batch = images.contiguous(memory_format=self.memory_format)
        # ---- bf16 autocast: CUDA and CPUs with native bf16 (see score_examples) ----
        with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.model(batch)
        self.predictions[rows, draws] = logits.argmax(dim=1).to(torch.int32)
        self.entropies[rows, draws] = softmax_entropy(logits)
        self.classified += len(images)
        self.progress(len(images))


@torch.inference_mode()
def score_examples(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    *,
    draws: int = 50,
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
    settings = _ComputeSettings.resolve(device, batch_size, mixed_precision, channels_last, int8)
    stages = (
        [stage for stage in (adaptive_config or AdaptiveConfig()).stages if stage[0] < draws]
        if adaptive
        else []
    )
    with _prepared(model, device, settings):
        classifier: Classifier = (
            _int8_copy(model, images_uint8_nhwc, sigma_indices, seed, settings.batch_size)
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


@torch.inference_mode()
def complete_draws(
    model: nn.Module,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    scores: Scores,
    examples: npt.ArrayLike,
    *,
    seed: int,
    device: torch.device,
    batch_size: int | None = None,
    mixed_precision: bool | None = None,
    channels_last: bool | None = None,
) -> Scores:
    """`scores` of adaptive scoring with `examples` drawn on to all M copies each.

    Pass what the scores were made with (model, images, levels, seed, precision). The extra
    copies are the ones exact scoring draws (noise depends only on seed, example and draw), so
    a completed example's H, class counts and noise-uncertainty are exact scoring's. Returns a
    new Scores; forward_passes includes the extra copies.
    """
    if scores.draws is None or scores.draws_used is None or scores.class_counts is None:
        raise ValueError("these scores do not record their draws; complete only score_examples' own results")
    if len(scores.entropy) != len(images_uint8_nhwc):
        raise ValueError(f"scores cover {len(scores.entropy)} examples, images {len(images_uint8_nhwc)}")
    chosen = np.unique(np.asarray(examples, dtype=np.int64))
    pending = chosen[scores.draws_used[chosen] < scores.draws]
    if pending.size == 0:
        return scores
    settings = _ComputeSettings.resolve(device, batch_size, mixed_precision, channels_last)
    count, draws = len(images_uint8_nhwc), scores.draws
    predictions = torch.full((count, draws), -1, dtype=torch.int32, device=device)
    entropies = torch.zeros((count, draws), dtype=torch.float32, device=device)
    with _prepared(model, device, settings):
        classifier = _BatchedClassifier(model, settings, predictions, entropies, lambda _: None)
        images, sigmas, image_shape = _device_inputs(images_uint8_nhwc, sigma_indices, 0, count, device)
        generator = torch.Generator(device=device)
        for drawn in np.unique(scores.draws_used[pending]):
            active = np.zeros(count, dtype=bool)
            active[pending[scores.draws_used[pending] == drawn]] = True
            _draw_phase(
                classifier,
                images,
                sigmas,
                torch.from_numpy(active).to(device),
                0,
                int(drawn),
                draws,
                seed,
                image_shape,
                generator,
            )
        classifier.finish()
    pending_rows = torch.from_numpy(pending).to(device)
    new_counts = _class_counts(predictions[pending_rows]).cpu().numpy()
    class_counts, new_counts = _widen([scores.class_counts, new_counts])
    class_counts = class_counts.copy()
    class_counts[pending] += new_counts
    new_entropy_sums = entropies[pending_rows].double().sum(dim=1).cpu().numpy()
    noise_uncertainty = scores.noise_uncertainty.copy()
    noise_uncertainty[pending] = (
        noise_uncertainty[pending] * scores.draws_used[pending] + new_entropy_sums
    ) / draws
    entropy = scores.entropy.copy()
    entropy[pending] = histogram_entropy(class_counts[pending])
    draws_used = scores.draws_used.copy()
    draws_used[pending] = draws
    return Scores(
        entropy=entropy,
        clean_uncertainty=scores.clean_uncertainty,
        noise_uncertainty=noise_uncertainty,
        forward_passes=scores.forward_passes + classifier.classified,
        draws_used=draws_used,
        draws=draws,
        class_counts=class_counts,
    )


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


def _device_inputs(
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


def _score(
    model: Classifier,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.integer],
    *,
    draws: int,
    seed: int,
    device: torch.device,
    settings: _ComputeSettings,
    stages: list[tuple[int, int]],
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
    images, sigmas, image_shape = _device_inputs(images_uint8_nhwc, sigma_indices, start, stop, device)
    predictions = torch.full((shard_size, draws), -1, dtype=torch.int32, device=device)
    entropies = torch.zeros((shard_size, draws), dtype=torch.float32, device=device)

    planned = shard_size * draws
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, planned)

    classifier = _BatchedClassifier(model, settings, predictions, entropies, advance)
    generator = torch.Generator(device=device)
    active = torch.ones(shard_size, dtype=torch.bool, device=device)
    drawn_so_far = 0
    for stage_draws, max_minority in stages:
        _draw_phase(
            classifier, images, sigmas, active, start, drawn_so_far, stage_draws, seed, image_shape, generator
        )
        classifier.finish()  # the stopping rule reads every prediction of this stage
        modal_count = _class_counts(predictions[:, :stage_draws]).max(dim=1).values
        active &= stage_draws - modal_count > max_minority
        drawn_so_far = stage_draws
        planned = done + int(active.sum().item()) * (draws - drawn_so_far)
    _draw_phase(classifier, images, sigmas, active, start, drawn_so_far, draws, seed, image_shape, generator)
    classifier.finish()

    clean = _clean_uncertainty(model, images, settings)
    draws_used = (predictions >= 0).sum(dim=1)
    counts = _class_counts(predictions)
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


def _class_counts(predictions: torch.Tensor) -> torch.Tensor:
    """(n, classes) int64 histogram of (n, draws) predicted classes; -1 marks a draw not made."""
    drawn = predictions >= 0
    num_classes = max(int(predictions.max().item()) + 1, 1) if predictions.numel() else 1
    counts = torch.zeros((len(predictions), num_classes), dtype=torch.int64, device=predictions.device)
    return counts.scatter_add_(1, predictions.clamp(min=0).long(), drawn.long())


def _draw_phase(
    classifier: _BatchedClassifier,
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


def _clean_uncertainty(model: Classifier, images: torch.Tensor, settings: _ComputeSettings) -> torch.Tensor:
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    results = []
    for begin in range(0, len(images), settings.batch_size):
        batch = images[begin : begin + settings.batch_size].permute(0, 3, 1, 2).float().div_(255.0)
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=settings.use_bf16):
            logits = model(batch.contiguous(memory_format=memory_format))
        results.append(softmax_entropy(logits))
    return torch.cat(results) if results else torch.zeros(0, device=images.device)
