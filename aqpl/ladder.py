"""The σ-ladder: the one definition of the noise levels people and models talk about.

Annotators, the simulated oracle, the database and the trainer all speak in ladder
indices (0..90); σ = index / 100 is the standard deviation of Gaussian noise added to
pixels in [0, 1]. Pure Python so both the API (no torch) and worker/ml can import it.
"""

from __future__ import annotations

LADDER_MIN_INDEX = 0
LADDER_MAX_INDEX = 90
LADDER_STEP = 0.01  # σ units per index
LADDER_SIZE = LADDER_MAX_INDEX - LADDER_MIN_INDEX + 1  # 91 levels


def sigma_of(index: int) -> float:
    """σ for a ladder index; raises ValueError outside 0..90."""
    if not LADDER_MIN_INDEX <= index <= LADDER_MAX_INDEX:
        raise ValueError(f"σ index {index} is outside the ladder {LADDER_MIN_INDEX}..{LADDER_MAX_INDEX}")
    return round(index * LADDER_STEP, 2)


def index_of(sigma: float) -> int:
    """Nearest ladder index for σ, clamped to the ladder."""
    nearest = round(sigma / LADDER_STEP)
    return max(LADDER_MIN_INDEX, min(LADDER_MAX_INDEX, int(nearest)))


def ladder_sigmas() -> list[float]:
    """All 91 σ values, 0.00 to 0.90."""
    return [sigma_of(i) for i in range(LADDER_MIN_INDEX, LADDER_MAX_INDEX + 1)]
