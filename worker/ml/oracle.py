"""Who answers "what is the right σ for this example?": a simulated oracle (Eq. 7) or a table.

The simulated oracle stands in for a person with a reference classifier F_o trained on the
clean training data with strong noise augmentation:

    σ_o(x, y) = the highest ladder level σ with  P_ε[ F_o(clip(x + σ·ε, 0, 1)) = y ] ≥ τ,

the probability estimated from K draws of ε. Each example's K noise fields are fixed by
(seed, example index) and reused at every level tried (common random numbers), so the
estimated accuracy curve is smooth in σ and the answer never depends on which other
examples are asked at the same time.

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
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, LADDER_STEP
from worker.ml.checkpoints import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from worker.ml.device import uses_cuda_fast_path
from worker.ml.models import ModelSpec, build_model
from worker.ml.noise import derive_seed
from worker.ml.training import TrainConfig, train_model

DEFAULT_THRESHOLD = (
    0.8  # τ: "recognisable" = F_o right on at least 80 % of noisy copies, a confident majority
)
DEFAULT_DRAWS = 64  # K: standard error of the estimated accuracy ≤ 0.05 at τ = 0.8
# F_o trains with each example at a level drawn uniformly from the whole ladder, so that it
# has seen every level it will be asked about (strong augmentation, Eq. 7's premise).
REFERENCE_SIGMA_RANGE = (LADDER_MIN_INDEX, LADDER_MAX_INDEX)
SEARCH_METHODS = ("bisection", "scan")
_ORACLE_BATCH_CPU = 2048  # noisy images per forward pass
_ORACLE_BATCH_CUDA = 16384

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


class SimulatedOracle:
    """Eq. 7 with reference classifier F_o, threshold τ and K draws per level (see module docstring)."""

    def __init__(
        self,
        reference: nn.Module,
        images_uint8_nhwc: npt.NDArray[np.uint8],
        labels: npt.NDArray[np.integer],
        *,
        device: torch.device,
        seed: int,
        threshold: float = DEFAULT_THRESHOLD,
        draws: int = DEFAULT_DRAWS,
        search: str = "bisection",
        batch_size: int | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold τ must be in (0, 1], got {threshold}")
        if draws < 1:
            raise ValueError(f"draws K must be >= 1, got {draws}")
        if search not in SEARCH_METHODS:
            raise ValueError(f"search must be one of {', '.join(SEARCH_METHODS)}, got {search!r}")
        if len(images_uint8_nhwc) != len(labels):
            raise ValueError(f"{len(images_uint8_nhwc)} images but {len(labels)} labels")
        self.reference = reference.to(device).eval()
        self.images = images_uint8_nhwc
        self.labels = np.asarray(labels, dtype=np.int64)
        self.device = device
        self.seed = seed
        self.threshold = threshold
        self.draws = draws
        self.search = search
        self.batch_size = batch_size or (
            _ORACLE_BATCH_CUDA if uses_cuda_fast_path(device) else _ORACLE_BATCH_CPU
        )
        self.forward_passes = 0  # noisy images classified so far, for cost reports

    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.zeros(0, dtype=np.int64)
        if indices.min() < 0 or indices.max() >= len(self.images):
            raise IndexError(f"example indices must be in 0..{len(self.images) - 1}")
        answers = np.zeros(len(indices), dtype=np.int64)
        # Chunks of examples whose K copies fit in a batch; answers depend only on (seed, index).
        per_chunk = max(1, self.batch_size // self.draws)
        for begin in range(0, len(indices), per_chunk):
            answers[begin : begin + per_chunk] = self._answer_chunk(indices[begin : begin + per_chunk])
        return answers

    @torch.inference_mode()
    def _answer_chunk(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        clean = torch.from_numpy(np.ascontiguousarray(self.images[indices])).to(self.device)
        clean = clean.permute(0, 3, 1, 2).float().div_(255.0)  # (n, C, H, W)
        labels = torch.from_numpy(self.labels[indices]).to(self.device)
        generator = torch.Generator(device=self.device)
        noise_fields = []
        for index in indices.tolist():
            generator.manual_seed(derive_seed(self.seed, index))
            noise_fields.append(
                torch.randn((self.draws, *clean.shape[1:]), generator=generator, device=self.device)
            )
        epsilon = torch.stack(noise_fields, dim=1)  # (K, n, C, H, W)

        def passes(levels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            """Whether F_o is right on ≥ τ of the K copies of examples `rows` at their `levels`."""
            sigmas = levels.to(torch.float32).mul(LADDER_STEP).view(1, -1, 1, 1, 1)
            noisy = (clean[rows].unsqueeze(0) + sigmas * epsilon[:, rows]).clamp_(0.0, 1.0)
            predictions = self._classify(noisy.reshape(-1, *clean.shape[1:])).view(self.draws, -1)
            accuracy = (predictions == labels[rows].unsqueeze(0)).float().mean(dim=0)
            return accuracy >= self.threshold - 1e-9  # K·τ correct counts as reaching τ

        count = len(indices)
        all_rows = torch.arange(count, device=self.device)
        if self.search == "scan":
            best = torch.zeros(count, dtype=torch.int64, device=self.device)
            for level in range(LADDER_MIN_INDEX, LADDER_MAX_INDEX + 1):
                ok = passes(torch.full((count,), level, device=self.device), all_rows)
                best = torch.where(ok, level, best)
            return best.cpu().numpy()

        low = torch.full((count,), LADDER_MIN_INDEX, dtype=torch.int64, device=self.device)
        high = torch.full((count,), LADDER_MAX_INDEX, dtype=torch.int64, device=self.device)
        clean_ok = passes(low, all_rows)
        top_ok = passes(high, all_rows)
        answer = torch.where(top_ok, high, low)  # fallbacks: 90 if the top passes, 0 if clean fails
        searching = clean_ok & ~top_ok
        # Invariant while searching: `low` passes, `high` fails; stop when they are neighbours.
        while True:
            rows = torch.nonzero(searching & (high - low > 1)).flatten()
            if len(rows) == 0:
                break
            middle = (low[rows] + high[rows]) // 2
            ok = passes(middle, rows)
            low[rows] = torch.where(ok, middle, low[rows])
            high[rows] = torch.where(ok, high[rows], middle)
        answer = torch.where(searching, low, answer)
        return answer.cpu().numpy()

    def _classify(self, images: torch.Tensor) -> torch.Tensor:
        use_fast_path = uses_cuda_fast_path(self.device)
        predictions = []
        for begin in range(0, len(images), self.batch_size):
            batch = images[begin : begin + self.batch_size]
            if use_fast_path:  # ---- CUDA only: channels-last + bf16 autocast ----
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_fast_path):
                predictions.append(self.reference(batch).argmax(dim=1))
        self.forward_passes += len(images)
        return torch.cat(predictions)


def _fingerprint(
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
    fingerprint = _fingerprint(spec, images_uint8_nhwc, labels, config, sigma_range)
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
