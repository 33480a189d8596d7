"""What one simulation depends on: methods, strategies, the oracle's settings and the training schedule."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.ml.corruptions import SUITE_NAMES
from worker.ml.oracle import DEFAULT_CONFIDENCE, DEFAULT_MAX_DRAWS, DEFAULT_THRESHOLD
from worker.ml.strategies import STRATEGY_NAMES
from worker.ml.training import AUGMENTATIONS

BASE_METHODS = ("standard", "gnt", "cat")
# Controls: the AQPL rounds' fine-tuning (same epochs, schedule, batch order and training noise) with
# no queries and σ unchanged, so AQPL-X − X-FT isolates what the answers changed.
CONTROL_STARTS = {"gnt-ft": "gnt", "cat-ft": "cat"}
# The base run each AQPL method continues from (its weights and levels).
AQPL_STARTS = {"aqpl-gnt": "gnt", "aqpl-cat": "cat"}
METHODS = (*BASE_METHODS, *CONTROL_STARTS, *AQPL_STARTS)
AQPL_STRATEGY = "aqpl"  # the strategy AQPL methods query with
NO_QUERIES = "none"  # the controls' "strategy": select nothing
CURVE_START = "gnt"  # every strategy curve starts from the GNT model, as in the paper's Figures 4-5
METRIC_NAMES = ("clean", "gaussian", "corruptions")

# Completing adaptive picks (scoring.complete_draws) classifies with the full-precision model.
INT8_WITH_ADAPTIVE = "int8 scoring and adaptive scoring cannot be combined: pick one"


@dataclass(frozen=True)
class SimulationConfig:
    """Everything one simulation depends on; stored verbatim in results.json."""

    dataset_format: str = "digits"
    dataset_path: Path | None = None
    model: str = "small_cnn"
    methods: tuple[str, ...] = METHODS
    strategies: tuple[str, ...] = STRATEGY_NAMES
    rounds: int = 3
    budget: int = 25  # B: examples per side and round, so a round asks the oracle 2B levels
    draws: int = 20  # M: noisy copies per example for H (Eq. 5); the paper's 50 costs 2.5x the time
    adaptive_scoring: bool = False  # stop drawing where the draws so far agree (scoring.AdaptiveConfig)
    int8_scoring: bool = False  # classify noisy copies with an int8 copy of the model (CPU only)
    seeds: tuple[int, ...] = (0,)
    train_limit: int | None = None  # stratified subset of the training split (None: all of it)
    test_limit: int | None = None  # stratified subset of the test split, which every corruption copies
    # The subsets, the corruption suite, F_o and the oracle's noise are made once with this seed, so
    # every run seed is evaluated on the same images and asks the same "person" (paired comparisons);
    # run seeds vary weights, batch order, training noise and selection tie-breaks.
    data_seed: int = 0
    device: str = "auto"
    epochs: int = 8  # training epochs of Standard, GNT, CAT
    reference_epochs: int = 8  # training epochs of the oracle's reference classifier F_o
    # F_o's training set: a stratified subset of the *whole* training split (None: all of it), not of
    # the simulation's train_limit subset, so F_o is stronger than the models it corrects.
    reference_train_limit: int | None = None
    finetune_epochs: int = 1  # epochs over the whole training set after each round's answers
    lr: float = 0.05  # peak SGD learning rate of full training (cosine to 0, as TrainConfig)
    finetune_lr: float = 0.01  # peak rate of fine-tuning: a fifth of lr, so it adjusts, not retrains
    batch_size: int = 128
    augment: str = "none"  # "crop-flip": random crop with 4-pixel padding and horizontal flip (CIFAR)
    gnt_sigma_index: int | None = None  # GNT's one level as a ladder index (None: per dataset family)
    oracle_tau: float = DEFAULT_THRESHOLD  # τ of Eq. 7: F_o right on at least this share of noisy copies
    oracle_confidence: float = DEFAULT_CONFIDENCE  # of each level's sequential test (oracle.SequentialTest)
    oracle_max_draws: int = DEFAULT_MAX_DRAWS  # last look of the sequential test
    suite: str | None = None  # corruption suite (None: by image shape, corruptions.default_suite_name)
    corruption_names: tuple[str, ...] | None = None  # subset of the suite's corruptions (None: all)
    diagnostic_sample: int = 200  # not-queried examples the oracle answers per round for Corollary 2.1
    bootstrap_resamples: int = 2000  # of the comparisons' bootstrap over seeds and test images
    cache_dir: Path | None = None  # corruption suites, F_o and oracle answers, reused across runs

    def __post_init__(self) -> None:
        unknown_methods = [m for m in self.methods if m not in METHODS]
        if unknown_methods:
            raise ValueError(f"unknown method(s) {unknown_methods}; choose from {list(METHODS)}")
        unknown_strategies = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if unknown_strategies:
            raise ValueError(
                f"unknown strategy(ies) {unknown_strategies}; choose from {list(STRATEGY_NAMES)}"
            )
        if not self.methods and not self.strategies:
            raise ValueError("nothing to simulate: give at least one method or one strategy")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.int8_scoring and self.adaptive_scoring:
            raise ValueError(INT8_WITH_ADAPTIVE)
        if self.suite is not None and self.suite not in SUITE_NAMES:
            raise ValueError(f"unknown corruption suite {self.suite!r}; choose from {list(SUITE_NAMES)}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augment!r}; choose from {list(AUGMENTATIONS)}")
        if not 0.0 < self.oracle_tau < 1.0:
            raise ValueError(f"oracle_tau must be in (0, 1), got {self.oracle_tau}")
        for name in ("rounds", "budget", "draws", "epochs", "reference_epochs", "finetune_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, tuples as lists."""
        return {
            key: (
                str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            )
            for key, value in asdict(self).items()
        }
