"""The conformity surrogate (the paper's Eq. 5) and the two baseline uncertainty scores.

For example i with ladder index σ_i: draw M noisy copies clip(x_i + σ_i·ε, 0, 1), classify
them, p_k = share of copies predicted as class k, H_i = −Σ_k p_k ln p_k (nats). Large H: σ_i
is excessive for the model; small H: deficient. This file is the one entry point; by concern:

- `scores.py`: `Scores`, `histogram_entropy`, `softmax_entropy`, `merge_scores` (of shards).
- `compute.py`: batch size, precision (bf16 autocast or an int8 copy) and memory layout.
- `draws.py`: the noise of each (seed, example, draw) and the batched classifying of the copies.
- `exact.py`: `score_examples`, all M draws per example, or staged when adaptive.
- `adaptive.py`: `AdaptiveConfig`, the early-stopping rule and its error bound.
- `completion.py`: `complete_draws`, adaptive scores drawn on to all M copies for chosen examples.
- `precision.py`: `resolve_precision`, the platform's precision setting (auto/fp32/bf16/int8) as arguments.
"""

from worker.ml.scoring.adaptive import AdaptiveConfig
from worker.ml.scoring.completion import complete_draws
from worker.ml.scoring.draws import NOISE_BLOCK_EXAMPLES, example_noise
from worker.ml.scoring.exact import score_examples
from worker.ml.scoring.precision import PRECISION_NAMES, ScoringPrecision, resolve_precision
from worker.ml.scoring.scores import Scores, histogram_entropy, merge_scores, softmax_entropy

__all__ = [
    "NOISE_BLOCK_EXAMPLES",
    "PRECISION_NAMES",
    "AdaptiveConfig",
    "Scores",
    "ScoringPrecision",
    "complete_draws",
    "example_noise",
    "histogram_entropy",
    "merge_scores",
    "resolve_precision",
    "score_examples",
    "softmax_entropy",
]
