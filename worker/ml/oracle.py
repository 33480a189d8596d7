"""Who answers "what is the right σ for this example?": a simulated oracle (Eq. 7) or a table.

The simulated oracle stands in for a person with a reference classifier F_o trained on the
clean training data with strong noise augmentation (every level of the ladder):

    σ_o(x, y) = the highest ladder level σ with  P_ε[ F_o(clip(x + σ·ε, 0, 1)) = y ] ≥ τ.

The paper asks for a "sufficiently large" τ (its example: 99.73 %); the default here is 0.95.
Each level is decided by a sequential test instead of a fixed number of draws: noisy copies are
drawn in doubling looks (32, 64, 128, ... up to `max_draws`); after each look the one-sided
Clopper-Pearson bounds of the accuracy at confidence 1 - δ/L (L looks, a union bound, so each
kind of error has probability at most δ = 1 - `confidence`) decide it: *accept* when the lower
bound clears τ, *reject* when the upper bound falls below τ. A clear case stops after 32 draws;
a level whose accuracy sits right at τ draws up to `max_draws` and is then decided by the
observed rate. Accepting at all needs enough draws: with every copy right, n ≥ ln(δ/L) / ln(τ)
(τ = 0.95, δ = 0.05: 112, so 128; τ = 0.997: 1,920, so raise `max_draws` to 2,048 or more).

Each example's noise fields are fixed by (seed, example index, block of draws) and reused at
every level tried (common random numbers), so the estimated accuracy curve is smooth in σ and
the answer never depends on which other examples are asked at the same time.

Search: bisection over the ladder, which assumes accuracy falls as σ grows (true in
expectation for noise). It returns a level that passes whose next level up fails. Fallbacks:
an example F_o misclassifies even when clean gets level 0; one that still passes at the top
of the ladder gets 90. `search="scan"` tries every level and returns the highest that passes,
for classifiers where the curve is not monotone (91 levels instead of ~7).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from scipy import stats
from torch import nn

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, LADDER_STEP
from worker.ml.checkpoints import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from worker.ml.device import cpu_has_fast_bf16, uses_cuda_fast_path
from worker.ml.models import ModelSpec, build_model
from worker.ml.noise import derive_seed
from worker.ml.training import TrainConfig, train_model

DEFAULT_THRESHOLD = 0.95  # τ: F_o right on at least 95 % of noisy copies ("sufficiently large", Eq. 7)
DEFAULT_CONFIDENCE = 0.95  # 1 - δ: each wrong accept or reject has probability ≤ 5 % (union over looks)
DEFAULT_MIN_DRAWS = 32  # first look; also the block of noise fields drawn per (example, block) seed
DEFAULT_MAX_DRAWS = 1024  # last look; decides by the observed rate if the bounds have not by then
# F_o trains with each example at a level drawn uniformly from the whole ladder, so that it
# has seen every level it will be asked about (strong augmentation, Eq. 7's premise).
REFERENCE_SIGMA_RANGE = (LADDER_MIN_INDEX, LADDER_MAX_INDEX)
SEARCH_METHODS = ("bisection", "scan")
_ORACLE_BATCH_CPU = 256  # noisy images per forward pass: activations stay in cache (as scoring)
_ORACLE_BATCH_CUDA = 16384
_NOISY_IMAGES_PER_CHUNK = 8192  # noisy copies assembled at once (bounds memory), classified in batches

Progress = Callable[[int, int], None]


class Oracle(Protocol):
    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The right ladder index σ_o for each training example index."""
        ...


class TableOracle:
    """Answers from a mapping example index -> ladder index: tests, and replaying real answers."""

    def __init__(self, answers: Mapping[int, int]) -> None:
        for index, level in answers.items():
            if not LADDER_MIN_INDEX <= level <= LADDER_MAX_INDEX:
                raise ValueError(f"answer {level} for example {index} is not on the ladder")
        self._answers = {int(k): int(v) for k, v in answers.items()}

    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        missing = [int(i) for i in np.asarray(indices).tolist() if int(i) not in self._answers]
        if missing:
            raise KeyError(f"no recorded answer for example(s) {missing[:10]}")
        return np.array([self._answers[int(i)] for i in np.asarray(indices).tolist()], dtype=np.int64)


@dataclass(frozen=True)
class SequentialTest:
    """Decides "is the accuracy at this level ≥ τ?" from doubling looks (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD
    confidence: float = DEFAULT_CONFIDENCE
    min_draws: int = DEFAULT_MIN_DRAWS
    max_draws: int = DEFAULT_MAX_DRAWS

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold τ must be in (0, 1], got {self.threshold}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_draws < 1 or self.max_draws < self.min_draws:
            raise ValueError(
                f"draws need 1 <= min_draws <= max_draws, got {self.min_draws} and {self.max_draws}"
            )

    @property
    def looks(self) -> tuple[int, ...]:
        """Draw counts at which the bounds are checked: min_draws doubling, ending at max_draws."""
        counts = [self.min_draws]
        while counts[-1] < self.max_draws:
            counts.append(min(2 * counts[-1], self.max_draws))
        return tuple(counts)

    @property
    def delta_per_look(self) -> float:
        return (1.0 - self.confidence) / len(self.looks)

    def bounds(
        self, successes: npt.NDArray[np.int64], draws: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """One-sided Clopper-Pearson lower and upper bounds at 1 - delta_per_look each."""
        delta = self.delta_per_look
        x = successes.astype(np.float64)
        n = draws.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            lower = np.where(x > 0, stats.beta.ppf(delta, x, n - x + 1), 0.0)
            upper = np.where(x < n, stats.beta.ppf(1.0 - delta, x + 1, n - x), 1.0)
        return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)

    def verdict(
        self, successes: npt.NDArray[np.int64], draws: npt.NDArray[np.int64], *, last_look: bool
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(decided, passes) per case: bounds decide; at the last look the observed rate does."""
        lower, upper = self.bounds(successes, draws)
        accept = lower >= self.threshold
        reject = upper < self.threshold
        if last_look:
            rate_passes = successes >= self.threshold * draws - 1e-9  # n·τ right counts as reaching τ
            return np.ones_like(accept), accept | (~reject & rate_passes)
        return accept | reject, accept


class SimulatedOracle:
    """Eq. 7 with reference classifier F_o, decided level by level with a `SequentialTest`."""

    def __init__(
        self,
        reference: nn.Module,
        images_uint8_nhwc: npt.NDArray[np.uint8],
        labels: npt.NDArray[np.integer],
        *,
        device: torch.device,
        seed: int,
        test: SequentialTest | None = None,
        search: str = "bisection",
        batch_size: int | None = None,
    ) -> None:
        if search not in SEARCH_METHODS:
            raise ValueError(f"search must be one of {', '.join(SEARCH_METHODS)}, got {search!r}")
        if len(images_uint8_nhwc) != len(labels):
            raise ValueError(f"{len(images_uint8_nhwc)} images but {len(labels)} labels")
        # Channels-last, and bf16 on CUDA and on CPUs with native bf16: the arithmetic scoring uses.
        self.use_bf16 = uses_cuda_fast_path(device) or (device.type == "cpu" and cpu_has_fast_bf16())
        self.reference = reference.to(device).eval().to(memory_format=torch.channels_last)
        self.images = images_uint8_nhwc
        self.labels = np.asarray(labels, dtype=np.int64)
        self.device = device
        self.seed = seed
        self.test = test or SequentialTest()
        self.search = search
        self.batch_size = batch_size or (
            _ORACLE_BATCH_CUDA if uses_cuda_fast_path(device) else _ORACLE_BATCH_CPU
        )
        self.forward_passes = 0  # noisy images classified so far, for cost reports
        self.levels_decided = 0  # (example, level) decisions made so far: passes / decisions = mean draws

    @property
    def threshold(self) -> float:
        return self.test.threshold

    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros(0, dtype=np.int64)
        if indices.min() < 0 or indices.max() >= len(self.images):
            raise IndexError(f"example indices must be in 0..{len(self.images) - 1}")
        count = len(indices)
        if self.search == "scan":
            best = np.zeros(count, dtype=np.int64)
            for level in range(LADDER_MIN_INDEX, LADDER_MAX_INDEX + 1):
                ok = self._passes(indices, np.full(count, level, dtype=np.int64))
                best = np.where(ok, level, best)
            return best
        low = np.full(count, LADDER_MIN_INDEX, dtype=np.int64)
        high = np.full(count, LADDER_MAX_INDEX, dtype=np.int64)
        clean_ok = self._passes(indices, low)
        top_ok = self._passes(indices, high)
        answer = np.where(top_ok, high, low)  # fallbacks: 90 if the top passes, 0 if clean fails
        searching = clean_ok & ~top_ok
        # Invariant while searching: `low` passes, `high` fails; stop when they are neighbours.
        while True:
            rows = np.flatnonzero(searching & (high - low > 1))
            if rows.size == 0:
                break
            middle = (low[rows] + high[rows]) // 2
            ok = self._passes(indices[rows], middle)
            low[rows] = np.where(ok, middle, low[rows])
            high[rows] = np.where(ok, high[rows], middle)
        return np.where(searching, low, answer)

    def _passes(
        self, examples: npt.NDArray[np.int64], levels: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """The sequential test's verdict for each (example, level) pair."""
        count = len(examples)
        successes = np.zeros(count, dtype=np.int64)
        draws = np.zeros(count, dtype=np.int64)
        decided = np.zeros(count, dtype=np.bool_)
        passes = np.zeros(count, dtype=np.bool_)
        looks = self.test.looks
        for look_index, target in enumerate(looks):
            rows = np.flatnonzero(~decided)
            if rows.size == 0:
                break
            drawn = int(draws[rows[0]])  # every undecided case has had the same looks
            successes[rows] += self._count_correct(examples[rows], levels[rows], drawn, target)
            draws[rows] = target
            now_decided, now_passes = self.test.verdict(
                successes[rows], draws[rows], last_look=look_index == len(looks) - 1
            )
            decided[rows] = now_decided
            passes[rows] = now_passes
        self.levels_decided += count
        return passes

    def _noise(self, example: int, begin: int, end: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Draws begin..end-1 of one example's fixed noise fields, made block by block."""
        block = self.test.min_draws
        fields = []
        generator = torch.Generator(device=self.device)
        for block_index in range(begin // block, (end - 1) // block + 1):
            generator.manual_seed(derive_seed(self.seed, example, block_index))
            fields.append(torch.randn((block, *shape), generator=generator, device=self.device))
        first = (begin // block) * block
        return torch.cat(fields)[begin - first : end - first]

    @torch.inference_mode()
    def _count_correct(
        self, examples: npt.NDArray[np.int64], levels: npt.NDArray[np.int64], begin: int, end: int
    ) -> npt.NDArray[np.int64]:
        """How many of draws begin..end-1 of each example F_o classifies right at its level."""
        new_draws = end - begin
        per_chunk = max(1, _NOISY_IMAGES_PER_CHUNK // new_draws)
        counts = np.zeros(len(examples), dtype=np.int64)
        for start in range(0, len(examples), per_chunk):
            chunk = examples[start : start + per_chunk]
            clean = torch.from_numpy(np.ascontiguousarray(self.images[chunk])).to(self.device)
            clean = clean.permute(0, 3, 1, 2).float().div_(255.0)  # (n, C, H, W)
            shape = tuple(clean.shape[1:])
            epsilon = torch.stack([self._noise(int(e), begin, end, shape) for e in chunk.tolist()])
            sigmas = torch.from_numpy(levels[start : start + per_chunk].astype(np.float32) * LADDER_STEP)
            sigmas = sigmas.to(self.device).view(-1, 1, 1, 1, 1)
            noisy = (clean.unsqueeze(1) + sigmas * epsilon).clamp_(0.0, 1.0)  # (n, draws, C, H, W)
            predictions = self._classify(noisy.reshape(-1, *shape)).view(len(chunk), new_draws)
            labels = torch.from_numpy(self.labels[chunk]).to(self.device).unsqueeze(1)
            counts[start : start + len(chunk)] = (predictions == labels).sum(dim=1).cpu().numpy()
        return counts

    def _classify(self, images: torch.Tensor) -> torch.Tensor:
        predictions = []
        for begin in range(0, len(images), self.batch_size):
            batch = images[begin : begin + self.batch_size].contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                predictions.append(self.reference(batch).argmax(dim=1))
        self.forward_passes += len(images)
        return torch.cat(predictions)


def reference_fingerprint(
    spec: ModelSpec,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    config: TrainConfig,
    sigma_range: tuple[int, int],
) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    description = {"spec": spec.to_dict(), "train_config": asdict(config), "sigma_range": list(sigma_range)}
    digest.update(json.dumps(description, sort_keys=True).encode())
    return digest.hexdigest()


def reference_sigma_indices(
    num_examples: int, seed: int, sigma_range: tuple[int, int] = REFERENCE_SIGMA_RANGE
) -> npt.NDArray[np.int64]:
    """F_o's training levels: one uniform draw from `sigma_range` (inclusive) per example."""
    rng = np.random.default_rng(derive_seed(seed, 0x0F0))
    return rng.integers(sigma_range[0], sigma_range[1] + 1, num_examples).astype(np.int64)


def train_reference_classifier(
    spec: ModelSpec,
    images_uint8_nhwc: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    config: TrainConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
    sigma_range: tuple[int, int] = REFERENCE_SIGMA_RANGE,
    checkpoint_path: Path | None = None,
) -> nn.Module:
    """F_o: `spec`'s model trained with Eq. 2 at levels spread over the whole ladder.

    With `checkpoint_path`, a checkpoint made from the same data, spec, config and levels is
    loaded instead of retraining; otherwise the trained model is saved there.
    """
    fingerprint = reference_fingerprint(spec, images_uint8_nhwc, labels, config, sigma_range)
    if checkpoint_path is not None and checkpoint_path.exists():
        metadata = read_checkpoint_metadata(checkpoint_path)
        if metadata.get("reference_fingerprint") == fingerprint:
            model, _ = load_checkpoint(checkpoint_path, device=device)
            return model
    model = build_model(spec, seed=derive_seed(config.seed, 0x0F0))
    sigma_indices = reference_sigma_indices(len(images_uint8_nhwc), config.seed, sigma_range)
    result = train_model(
        model, images_uint8_nhwc, labels, sigma_indices, config, device=device, progress=progress
    )
    if checkpoint_path is not None:
        save_checkpoint(
            checkpoint_path,
            model,
            spec,
            {
                "role": "reference classifier F_o",
                "reference_fingerprint": fingerprint,
                "training_config": asdict(config),
                "sigma_range": list(sigma_range),
                "final_loss": result.final_loss,
            },
        )
    return model
