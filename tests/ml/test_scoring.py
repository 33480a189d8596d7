"""Eq. 5 scoring: entropy of histograms, batched = naive, sharded = unsharded, adaptive stopping."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from worker.ml.models import build_model, spec_for_images
from worker.ml.noise import sigmas_of_indices
from worker.ml.scoring import (
    NOISE_BLOCK_EXAMPLES,
    AdaptiveConfig,
    Scores,
    complete_draws,
    example_noise,
    histogram_entropy,
    merge_scores,
    score_examples,
    softmax_entropy,
)
from worker.ml.strategies import Selection, select
from worker.ml.training import TrainConfig, train_model

CPU = torch.device("cpu")


class MeanBrightness(nn.Module):
    """Two classes by mean pixel value: logits ±steepness·(mean − 0.5); a coin flip near 0.5 under noise."""

    def __init__(self, steepness: float = 40.0) -> None:
        super().__init__()
        self.steepness = steepness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-self.steepness * centred, self.steepness * centred], dim=1)


def _constant_images(values: list[float], side: int = 4) -> np.ndarray:
    pixels = np.array(values, dtype=np.float64)[:, None, None, None] * np.ones((1, side, side, 1))
    return (pixels * 255).round().astype(np.uint8)


def _random_model_and_images(count: int = 70, seed: int = 0) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 6, 6, 3), dtype=np.uint8)
    model = build_model(spec_for_images(images, 5, "small_cnn"), seed=seed).eval()
    return model, images, rng.integers(0, 91, count)


def _naive_scores(
    model: nn.Module, images: np.ndarray, sigma_indices: np.ndarray, draws: int, seed: int
) -> Scores:
    """One example at a time, its copies in one batch, with the noise score_examples documents."""
    entropy, clean, noisy = [], [], []
    sigmas = sigmas_of_indices(sigma_indices)
    with torch.inference_mode():
        for index, image in enumerate(images):
            x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
            epsilon = example_noise(seed, index, draws, tuple(x.shape), CPU)  # type: ignore[arg-type]
            copies = (x.unsqueeze(0) + float(sigmas[index]) * epsilon).clamp(0, 1)
            logits = model(copies)
            counts = np.bincount(logits.argmax(1).numpy(), minlength=logits.shape[1])
            entropy.append(histogram_entropy(counts))
            noisy.append(softmax_entropy(logits).double().mean().item())
            clean.append(softmax_entropy(model(x.unsqueeze(0))).item())
    return Scores(np.array(entropy), np.array(clean), np.array(noisy), len(images) * draws)


def test_entropy_of_known_histograms() -> None:
    assert histogram_entropy([7, 0, 0]) == 0.0
    assert histogram_entropy([5, 5, 5, 5]) == pytest.approx(math.log(4))
    assert histogram_entropy([3, 1]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    rows = histogram_entropy([[10, 0], [5, 5], [0, 0]])
    assert rows.tolist() == pytest.approx([0.0, math.log(2), 0.0])  # an empty histogram reads as 0


def test_batched_scoring_equals_naive_per_example_scoring() -> None:
    model, images, sigma_indices = _random_model_and_images()
    batched = score_examples(
        model, images, sigma_indices, draws=12, seed=4, device=CPU, batch_size=100, mixed_precision=False
    )
    naive = _naive_scores(model, images, sigma_indices, draws=12, seed=4)
    assert batched.forward_passes == naive.forward_passes == 70 * 12
    assert np.array_equal(batched.entropy, naive.entropy)
    np.testing.assert_allclose(batched.noise_uncertainty, naive.noise_uncertainty, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.clean_uncertainty, naive.clean_uncertainty, rtol=1e-5, atol=1e-6)
    assert batched.entropy.dtype == np.float64
    assert batched.entropy.max() > 0  # the random model does not make this test trivial


@pytest.mark.parametrize("mixed_precision", [False, None])  # fp32, and the machine's default
def test_sharded_scoring_equals_unsharded(mixed_precision: bool | None) -> None:
    model, images, sigma_indices = _random_model_and_images(count=3 * NOISE_BLOCK_EXAMPLES + 5)
    options = {"draws": 7, "seed": 9, "device": CPU, "mixed_precision": mixed_precision}
    whole = score_examples(model, images, sigma_indices, batch_size=64, **options)  # type: ignore[arg-type]
    cuts = [0, 13, 40, 64, len(images)]  # inside and on noise-block boundaries
    shards = [
        score_examples(model, images, sigma_indices, batch_size=50, start=a, stop=b, **options)  # type: ignore[arg-type]
        for a, b in itertools.pairwise(cuts)
    ]
    merged = merge_scores(shards)
    assert np.array_equal(merged.entropy, whole.entropy)
    np.testing.assert_allclose(merged.noise_uncertainty, whole.noise_uncertainty, rtol=1e-6)
    np.testing.assert_allclose(merged.clean_uncertainty, whole.clean_uncertainty, rtol=1e-6)
    assert merged.forward_passes == whole.forward_passes


def test_scores_depend_on_the_seed() -> None:
    model, images, sigma_indices = _random_model_and_images()
    first = score_examples(model, images, sigma_indices, draws=10, seed=1, device=CPU)
    again = score_examples(model, images, sigma_indices, draws=10, seed=1, device=CPU)
    other = score_examples(model, images, sigma_indices, draws=10, seed=2, device=CPU)
    assert np.array_equal(first.entropy, again.entropy)
    assert not np.array_equal(first.entropy, other.entropy)
    assert np.array_equal(first.clean_uncertainty, other.clean_uncertainty)  # clean inputs have no noise


def test_entropy_tracks_how_settled_the_prediction_is() -> None:
    images = _constant_images([0.95, 0.05, 0.5, 0.5])
    scores = score_examples(
        MeanBrightness(), images, np.array([20, 20, 60, 0]), draws=200, seed=0, device=CPU
    )
    assert scores.entropy[0] == scores.entropy[1] == 0.0  # far from the boundary: unanimous
    assert scores.entropy[2] == pytest.approx(math.log(2), abs=0.02)  # on the boundary: a coin flip
    assert scores.entropy[3] == 0.0  # σ = 0: every copy is the clean image


def test_adaptive_scoring_stops_settled_examples_and_agrees_on_clear_cases() -> None:
    clear, uncertain = [0.95, 0.05] * 20, [0.5] * 10
    images = _constant_images(clear + uncertain)
    sigma_indices = np.full(len(images), 40)
    exact = score_examples(MeanBrightness(), images, sigma_indices, draws=50, seed=3, device=CPU)
    adaptive = score_examples(
        MeanBrightness(), images, sigma_indices, draws=50, seed=3, device=CPU, adaptive=True
    )
    assert exact.forward_passes == 50 * 50
    assert adaptive.forward_passes == 40 * 8 + 10 * 50  # pilots of 8 for the clear, 50 for the rest
    assert adaptive.draws_used is not None and adaptive.draws_used.tolist() == [8] * 40 + [50] * 10
    assert np.array_equal(adaptive.entropy, exact.entropy)  # same noise, same draws where not stopped
    assert adaptive.entropy[40:].min() > 0.4


def test_adaptive_error_bound() -> None:
    config = AdaptiveConfig(stages=((10, 0),))
    assert config.early_stop_bound(0.5) == pytest.approx(2 * 0.5**10)  # top class or the rest unanimous
    default = AdaptiveConfig()
    assert default.early_stop_bound(0.7) < 0.11
    assert default.early_stop_bound(0.6) < 0.022
    assert default.early_stop_bound(0.5) < 0.01
    assert default.early_stop_bound(0.7, max_draws=20) == pytest.approx(0.7**8 + 0.3**8)
    with pytest.raises(ValueError, match="increasing"):
        AdaptiveConfig(stages=((10, 0), (10, 1)))
    with pytest.raises(ValueError, match="minority"):
        AdaptiveConfig(stages=((10, 5),))


def test_later_stages_stop_nearly_unanimous_examples() -> None:
    # Mean 0.5 + 0.3 under σ 0.5 on 16 pixels (sd 0.125 before clipping): mostly right, sometimes not.
    images = _constant_images([0.8] * 40)
    sigma_indices = np.full(40, 90)
    exact = score_examples(MeanBrightness(), images, sigma_indices, draws=50, seed=1, device=CPU)
    adaptive = score_examples(
        MeanBrightness(), images, sigma_indices, draws=50, seed=1, device=CPU, adaptive=True
    )
    assert adaptive.draws_used is not None
    assert set(adaptive.draws_used.tolist()) >= {8, 20}  # some stop at the pilot, some at 18 of 20
    assert adaptive.forward_passes == int(adaptive.draws_used.sum()) < exact.forward_passes
    finished = adaptive.draws_used == 50
    assert np.array_equal(adaptive.entropy[finished], exact.entropy[finished])


def test_completing_draws_gives_those_examples_their_exact_scores() -> None:
    images = _constant_images([0.8] * 40)  # mostly right at σ 0.9, sometimes not (see above)
    sigma_indices = np.full(40, 90)
    exact = score_examples(MeanBrightness(), images, sigma_indices, draws=50, seed=1, device=CPU)
    adaptive = score_examples(
        MeanBrightness(), images, sigma_indices, draws=50, seed=1, device=CPU, adaptive=True
    )
    assert adaptive.draws_used is not None and adaptive.class_counts is not None
    stopped = np.flatnonzero(adaptive.stopped_early())
    chosen = stopped[::2]
    finished = np.flatnonzero(~adaptive.stopped_early())[:1]  # already complete: nothing to do
    completed = complete_draws(
        MeanBrightness(),
        images,
        sigma_indices,
        adaptive,
        np.concatenate([chosen, finished]),
        seed=1,
        device=CPU,
    )
    assert completed.draws_used is not None and completed.class_counts is not None
    assert exact.class_counts is not None
    assert completed.draws_used[chosen].tolist() == [50] * len(chosen)
    assert np.array_equal(completed.entropy[chosen], exact.entropy[chosen])
    assert np.array_equal(completed.class_counts[chosen], exact.class_counts[chosen])
    np.testing.assert_allclose(
        completed.noise_uncertainty[chosen], exact.noise_uncertainty[chosen], rtol=1e-6
    )
    assert exact.entropy[chosen].max() > 0  # some pilot-unanimous example disagrees later: not trivial
    untouched = np.setdiff1d(np.arange(40), chosen)
    assert np.array_equal(completed.entropy[untouched], adaptive.entropy[untouched])
    assert np.array_equal(completed.draws_used[untouched], adaptive.draws_used[untouched])
    extra = int((50 - adaptive.draws_used[chosen]).sum())
    assert completed.forward_passes == adaptive.forward_passes + extra
    assert (
        complete_draws(MeanBrightness(), images, sigma_indices, adaptive, finished, seed=1, device=CPU)
        is adaptive
    )


def test_completing_draws_at_the_default_precision_matches_exact_scoring() -> None:
    model, images, sigma_indices = _random_model_and_images(count=3 * NOISE_BLOCK_EXAMPLES + 5)
    sigma_indices[:] = 15  # low enough that many random-model predictions stay unanimous on the pilot
    exact = score_examples(model, images, sigma_indices, draws=30, seed=2, device=CPU)
    adaptive = score_examples(model, images, sigma_indices, draws=30, seed=2, device=CPU, adaptive=True)
    stopped = np.flatnonzero(adaptive.stopped_early())
    assert stopped.size > 10
    completed = complete_draws(model, images, sigma_indices, adaptive, stopped, seed=2, device=CPU)
    assert np.array_equal(completed.entropy, exact.entropy)
    assert completed.forward_passes == exact.forward_passes


def test_completing_needs_scores_that_record_their_draws() -> None:
    images = _constant_images([0.8] * 4)
    recorded = score_examples(MeanBrightness(), images, np.full(4, 50), draws=10, seed=0, device=CPU)
    bare = Scores(recorded.entropy, recorded.clean_uncertainty, recorded.noise_uncertainty, 40)
    with pytest.raises(ValueError, match="do not record their draws"):
        complete_draws(MeanBrightness(), images, np.full(4, 50), bare, [0], seed=0, device=CPU)
    with pytest.raises(ValueError, match="scores cover 4 examples, images 3"):
        complete_draws(MeanBrightness(), images[:3], np.full(3, 50), recorded, [0], seed=0, device=CPU)


def test_adaptive_selection_with_completion_picks_what_exact_scoring_picks() -> None:
    # Brightness 0.55..0.9 at σ 0.5: the brightest are unanimous on 50 draws, many are unanimous
    # on a pilot of 8 but not on 50, the dimmest are uncertain.
    images = _constant_images(list(np.linspace(0.55, 0.9, 120)))
    sigma_indices = np.full(120, 50)
    exact = score_examples(MeanBrightness(), images, sigma_indices, draws=50, seed=6, device=CPU)
    adaptive = score_examples(
        MeanBrightness(), images, sigma_indices, draws=50, seed=6, device=CPU, adaptive=True
    )
    pilot_only = (adaptive.entropy == 0) & (exact.entropy > 0)
    assert pilot_only.sum() > 20 and (exact.entropy == 0).sum() > 20

    def complete(scores: Scores, examples: np.ndarray) -> Scores:
        return complete_draws(MeanBrightness(), images, sigma_indices, scores, examples, seed=6, device=CPU)

    def side(selection: Selection, name: str) -> list[int]:
        return [int(i) for i, s in zip(selection.indices, selection.sides, strict=True) if s == name]

    none_queried = np.zeros(120, dtype=bool)
    uncompleted_differs = False
    for rng_seed in range(5):
        expected = select("aqpl", exact, 10, none_queried, np.random.default_rng(rng_seed))
        chosen = select(
            "aqpl", adaptive, 10, none_queried, np.random.default_rng(rng_seed), complete=complete
        )
        assert side(chosen, "deficient") == side(expected, "deficient")
        # The excessive side can only miss examples whose pilot was unanimous by chance (the bound).
        missed = set(side(expected, "excessive")) - set(side(chosen, "excessive"))
        assert len(missed) <= 2 and all(adaptive.stopped_early()[i] for i in missed)
        assert chosen.completion_passes > 0
        uncompleted = select("aqpl", adaptive, 10, none_queried, np.random.default_rng(rng_seed))
        assert uncompleted.completion_passes == 0
        uncompleted_differs |= side(uncompleted, "deficient") != side(expected, "deficient")
    assert uncompleted_differs  # without completion, pilot-only zeros get picked as deficient


def test_clean_uncertainty_is_the_entropy_of_the_clean_softmax() -> None:
    images = _constant_images([0.5, 0.55, 0.9])
    scores = score_examples(
        MeanBrightness(steepness=10), images, np.zeros(3, dtype=int), draws=5, seed=0, device=CPU
    )
    centred = (torch.from_numpy(images[:, 0, 0, 0]).double() / 255 - 0.5) * 10
    probabilities = torch.sigmoid(2 * centred)
    expected = -(probabilities * probabilities.log() + (1 - probabilities) * (1 - probabilities).log())
    np.testing.assert_allclose(scores.clean_uncertainty, expected.numpy(), rtol=1e-4)
    np.testing.assert_allclose(scores.noise_uncertainty, expected.numpy(), rtol=1e-4)  # σ = 0


def test_progress_and_input_checks() -> None:
    images = _constant_images([0.2] * 6)
    calls: list[tuple[int, int]] = []
    score_examples(
        MeanBrightness(),
        images,
        np.full(6, 10),
        draws=4,
        seed=0,
        device=CPU,
        batch_size=10,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (24, 24)
    options = {"draws": 50, "seed": 0, "device": CPU}
    with pytest.raises(ValueError, match="shard"):
        score_examples(MeanBrightness(), images, np.zeros(6, dtype=int), start=4, stop=2, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="σ indices"):
        score_examples(MeanBrightness(), images, np.zeros(5, dtype=int), **options)  # type: ignore[arg-type]
    empty = score_examples(MeanBrightness(), images, np.zeros(6, dtype=int), start=3, stop=3, **options)  # type: ignore[arg-type]
    assert empty.entropy.shape == (0,) and empty.forward_passes == 0


def test_model_can_still_be_trained_after_channels_last_scoring() -> None:
    model, images, sigma_indices = _random_model_and_images(count=16)
    score_examples(model, images, sigma_indices, draws=3, seed=0, device=CPU, channels_last=True)
    convolution_weights = [p for p in model.parameters() if p.dim() == 4]
    assert convolution_weights and all(w.is_contiguous() for w in convolution_weights)  # layout restored
    # Fine-tuning after scoring is the AQPL round; weights converted under inference mode would fail here.
    train_model(
        model,
        images,
        np.arange(16) % 5,
        sigma_indices,
        TrainConfig(epochs=1, batch_size=8, lr=0.05),
        device=CPU,
    )


@pytest.mark.gpu
def test_cuda_scoring_with_bf16_and_channels_last() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, images, sigma_indices = _random_model_and_images()
    device = torch.device("cuda")
    scores = score_examples(model, images, sigma_indices, draws=20, seed=0, device=device, adaptive=True)
    assert scores.entropy.shape == (70,)
    assert np.all((scores.entropy >= 0) & (scores.entropy <= math.log(5) + 1e-9))
    exact = score_examples(model, images, sigma_indices, draws=20, seed=0, device=device)
    assert exact.forward_passes == 70 * 20
