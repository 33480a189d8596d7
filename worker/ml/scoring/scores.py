"""What scoring returns: `Scores`, the entropies it is made of, and the merging of shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch


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


def class_counts(predictions: torch.Tensor) -> torch.Tensor:
    """(n, classes) int64 histogram of (n, draws) predicted classes; -1 marks a draw not made."""
    drawn = predictions >= 0
    num_classes = max(int(predictions.max().item()) + 1, 1) if predictions.numel() else 1
    counts = torch.zeros((len(predictions), num_classes), dtype=torch.int64, device=predictions.device)
    return counts.scatter_add_(1, predictions.clamp(min=0).long(), drawn.long())


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
        else np.concatenate(widen_class_counts([c for c in counts if c is not None])),
    )


def widen_class_counts(counts: Sequence[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    """Class-count arrays padded with zero columns to the widest (a shard sees only classes it predicted)."""
    width = max(c.shape[1] for c in counts)
    return [np.pad(c, ((0, 0), (0, width - c.shape[1]))) for c in counts]
