"""Paired comparisons of methods over seeds: "does querying help?" as a number with an interval.

Seed s of method a and seed s of method b share the starting model and the test images, so every
statistic here works on differences a - b: per seed (the paired t-test) and per image (the
two-stage bootstrap, which adds the uncertainty of having scored a finite test set). Accuracies
are fractions throughout (0.012 = 1.2 points); only `describe` speaks in points.

Pure NumPy/SciPy: no torch, no I/O, deterministic for a given bootstrap seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

CI95_METHOD = "paired t over seeds"
BOOTSTRAP_METHOD = (
    "two-stage percentile bootstrap: seeds with replacement, then test images with replacement "
    "(one image draw shared by all seeds)"
)
MINUS = "−"  # U+2212: a true minus sign in sentences people read

# Resamples per matrix product in the bootstrap: 256 x 5000 float64 counts is ~10 MB, small
# enough to stay in cache-friendly memory, large enough that BLAS does the work.
_BOOTSTRAP_CHUNK = 256

FloatArray = npt.NDArray[np.float64]
Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


@dataclass(frozen=True)
class Comparison:
    """Method a against method b on one metric at one query budget, paired over seeds."""

    a: str
    b: str
    metric: str
    queries: int | None
    mean: float  # mean over seeds of (a - b), accuracy fraction (0.012 = 1.2 points)
    ci95: Interval  # paired t interval over seeds (t, n-1 df); (nan, nan) below 2 seeds
    ci95_bootstrap: Interval  # two-stage bootstrap over seeds and images; (nan, nan) below 2 seeds
    n_seeds: int
    p_value: float  # two-sided paired t-test; nan below 2 seeds, 1.0 when every difference is 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: nan becomes None, intervals become two-element lists."""
        return {
            "a": self.a,
            "b": self.b,
            "metric": self.metric,
            "queries": self.queries,
            "mean": _json_float(self.mean),
            "ci95": [_json_float(self.ci95[0]), _json_float(self.ci95[1])],
            "ci95_method": CI95_METHOD,
            "ci95_bootstrap": [_json_float(self.ci95_bootstrap[0]), _json_float(self.ci95_bootstrap[1])],
            "bootstrap_method": BOOTSTRAP_METHOD,
            "n_seeds": self.n_seeds,
            "p_value": _json_float(self.p_value),
        }


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def compare(
    a: str,
    b: str,
    metric: str,
    queries: int | None,
    a_images: FloatArray,
    b_images: FloatArray,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """a_images, b_images: (n_seeds, n_images) per-image scores; per-seed metric = row mean."""
    a_scores = np.asarray(a_images, dtype=np.float64)
    b_scores = np.asarray(b_images, dtype=np.float64)
    if a_scores.ndim != 2 or a_scores.shape != b_scores.shape:
        raise ValueError(
            f"expected two (n_seeds, n_images) arrays of one shape, got {a_scores.shape} and {b_scores.shape}"
        )
    if a_scores.size == 0:
        raise ValueError(f"nothing to compare: shape {a_scores.shape}")
    differences = a_scores - b_scores
    n_seeds = differences.shape[0]
    mean, ci95, p_value = paired_t(differences.mean(axis=1))
    # With one seed the bootstrap would only see image noise and look falsely certain.
    ci95_bootstrap = (
        bootstrap_interval(differences, resamples=resamples, seed=seed) if n_seeds >= 2 else NAN_INTERVAL
    )
    return Comparison(
        a=a,
        b=b,
        metric=metric,
        queries=queries,
        mean=mean,
        ci95=ci95,
        ci95_bootstrap=ci95_bootstrap,
        n_seeds=n_seeds,
        p_value=p_value,
    )


def bootstrap_interval(
    differences: FloatArray, *, resamples: int, seed: int, confidence: float = 0.95
) -> Interval:
    """Percentile interval of the mean of (n_seeds, n_images) differences, resampling seeds then images.

    Every seed scores the same images, so one image draw serves all chosen seeds (a crossed design).
    """
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty (n_seeds, n_images) array, got shape {values.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    _check_confidence(confidence)
    n_seeds, n_images = values.shape
    rng = np.random.default_rng(seed)
    # A resample's mean is (seed counts)ᵀ · D · (image counts) / (n_seeds · n_images): counts
    # replace index arrays, so no resamples x n_seeds x n_images array is ever built.
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=resamples)
    means = np.empty(resamples)
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, resamples)
        image_counts = _image_counts(rng, stop - start, n_images)
        per_seed = image_counts @ values.T  # (chunk, n_seeds): each seed's summed resampled images
        means[start:stop] = np.einsum("rs,rs->r", seed_counts[start:stop], per_seed)
    means /= n_seeds * n_images
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _image_counts(rng: np.random.Generator, rows: int, n_images: int) -> FloatArray:
    """How often each image is drawn in `rows` resamples of n_images with replacement."""
    # Same distribution as rng.multinomial(n_images, uniform), but integers + one bincount is
    # several times faster than a binomial chain over thousands of categories.
    draws = rng.integers(0, n_images, size=(rows, n_images))
    draws += np.arange(rows)[:, None] * n_images
    counts = np.bincount(draws.ravel(), minlength=rows * n_images)
    return counts.reshape(rows, n_images).astype(np.float64)


def paired_t(differences_per_seed: FloatArray, confidence: float = 0.95) -> tuple[float, Interval, float]:
    """Mean, (lo, hi) t interval with n-1 df, and two-sided p-value of the mean difference against 0."""
    values = np.asarray(differences_per_seed, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("paired_t needs at least one difference")
    _check_confidence(confidence)
    mean = float(values.mean())
    n = values.size
    if n < 2:
        return mean, NAN_INTERVAL, math.nan
    standard_error = float(values.std(ddof=1)) / math.sqrt(n)
    if standard_error == 0.0:
        # Identical differences: no spread to test against, so the answer is exact.
        return mean, (mean, mean), 1.0 if mean == 0.0 else 0.0
    df = n - 1
    half_width = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * standard_error
    p_value = float(2.0 * stats.t.sf(abs(mean) / standard_error, df))
    return mean, (mean - half_width, mean + half_width), p_value


def minimum_detectable_effect(
    sd_of_differences: float, n_seeds: int, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true mean difference a two-sided paired t-test over n_seeds detects with this power."""
    if sd_of_differences < 0 or not math.isfinite(sd_of_differences):
        raise ValueError(f"sd_of_differences must be finite and >= 0, got {sd_of_differences}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    if n_seeds < 2:
        return math.inf  # no variance estimate, no test
    if sd_of_differences == 0.0:
        return 0.0
    normal = _normal_mde(sd_of_differences, n_seeds, alpha=alpha, power=power)
    df = n_seeds - 1
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    root_n_over_sd = math.sqrt(n_seeds) / sd_of_differences

    def shortfall(effect: float) -> float:
        noncentrality = effect * root_n_over_sd
        reject = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
        return float(reject) - power

    # Power rises with the effect; the t-test needs more than the normal formula, so widen from there.
    upper = normal
    for _ in range(60):
        if shortfall(upper) >= 0.0:
            break
        upper *= 2.0
    else:
        return normal
    try:
        effect = float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-12 * upper))
    except (ValueError, RuntimeError):
        return normal
    return effect if math.isfinite(effect) else normal


def _normal_mde(sd: float, n: int, *, alpha: float, power: float) -> float:
    """(z_{1-α/2} + z_power) · sd / √n: the large-sample answer."""
    z = float(stats.norm.ppf(1.0 - alpha / 2.0)) + float(stats.norm.ppf(power))
    return z * sd / math.sqrt(n)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation (ties get average ranks); nan if either is constant or under 3 values."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"spearman needs equal lengths, got {xs.size} and {ys.size}")
    if xs.size < 3 or np.all(xs == xs[0]) or np.all(ys == ys[0]):
        return math.nan
    x_ranks = stats.rankdata(xs) - (xs.size + 1) / 2.0
    y_ranks = stats.rankdata(ys) - (ys.size + 1) / 2.0
    return float(x_ranks @ y_ranks / math.sqrt(float(x_ranks @ x_ranks) * float(y_ranks @ y_ranks)))


def describe(comparison: Comparison, *, a_label: str, b_label: str, metric_label: str) -> str:
    """One plain sentence in points, phrased from the winner's side when the paired interval excludes 0."""
    c = comparison
    at = f" at {c.queries} queries" if c.queries is not None else ""
    if c.n_seeds < 2 or not all(math.isfinite(v) for v in c.ci95):
        return (
            f"{a_label} vs {b_label} on {metric_label}{at}: {_points(c.mean)} points (one seed: no interval)"
        )
    evidence = f"{_p_text(c.p_value)}, {c.n_seeds} seeds"
    low, high = c.ci95
    # Differences of a few hundredths of a point would all read "0.0": give them a second decimal.
    digits = 2 if max(abs(low), abs(high)) < 0.005 else 1

    def points(fraction: float) -> str:
        return _in_points(fraction, digits)

    if low > 0.0:
        return (
            f"{a_label} beats {b_label} on {metric_label} by {points(c.mean)} points "
            f"[{points(low)}, {points(high)}]{at} ({evidence})"
        )
    if high < 0.0:
        return (
            f"{b_label} beats {a_label} on {metric_label} by {points(-c.mean)} points "
            f"[{points(-high)}, {points(-low)}]{at} ({evidence})"
        )
    return (
        f"{a_label} vs {b_label} on {metric_label}{at}: no difference detectable "
        f"({points(c.mean)} [{points(low)}, {points(high)}], {evidence})"
    )


def _points(fraction: float) -> str:
    return _in_points(fraction, 1)


def _in_points(fraction: float, digits: int) -> str:
    """Accuracy fraction as points with `digits` decimals and a true minus sign; never "−0.0"."""
    value = round(fraction * 100.0, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:.{digits}f}".replace("-", MINUS)


def _p_text(p_value: float) -> str:
    """Two decimals, three below 0.01 (p = 0.004); below 0.001 the digits add nothing, so p < 0.001."""
    if p_value < 0.001:
        return "p < 0.001"
    return f"p = {p_value:.3f}" if p_value < 0.01 else f"p = {p_value:.2f}"


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
