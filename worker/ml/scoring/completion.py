"""Completing adaptive scores: `complete_draws` draws chosen examples on to all M copies.

strategies.select calls it (bound to the model, images and seed) on the picks whose scoring
stopped early, so a selection made on adaptive scores reads exact scoring's H for every pick.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from worker.ml.scoring.compute import ComputeSettings, prepared
from worker.ml.scoring.draws import BatchedClassifier, device_inputs, draw_phase
from worker.ml.scoring.scores import Scores, class_counts, histogram_entropy, widen_class_counts


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
    settings = ComputeSettings.resolve(device, batch_size, mixed_precision, channels_last)
    count, draws = len(images_uint8_nhwc), scores.draws
    predictions = torch.full((count, draws), -1, dtype=torch.int32, device=device)
    entropies = torch.zeros((count, draws), dtype=torch.float32, device=device)
    with prepared(model, device, settings):
        classifier = BatchedClassifier(model, settings, predictions, entropies, lambda _: None)
        images, sigmas, image_shape = device_inputs(images_uint8_nhwc, sigma_indices, 0, count, device)
        generator = torch.Generator(device=device)
        for drawn in np.unique(scores.draws_used[pending]):
            active = np.zeros(count, dtype=bool)
            active[pending[scores.draws_used[pending] == drawn]] = True
            draw_phase(
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
    new_counts = class_counts(predictions[pending_rows]).cpu().numpy()
    counts, new_counts = widen_class_counts([scores.class_counts, new_counts])
    counts = counts.copy()
    counts[pending] += new_counts
    new_entropy_sums = entropies[pending_rows].double().sum(dim=1).cpu().numpy()
    noise_uncertainty = scores.noise_uncertainty.copy()
    noise_uncertainty[pending] = (
        noise_uncertainty[pending] * scores.draws_used[pending] + new_entropy_sums
    ) / draws
    entropy = scores.entropy.copy()
    entropy[pending] = histogram_entropy(counts[pending])
    draws_used = scores.draws_used.copy()
    draws_used[pending] = draws
    return Scores(
        entropy=entropy,
        clean_uncertainty=scores.clean_uncertainty,
        noise_uncertainty=noise_uncertainty,
        forward_passes=scores.forward_passes + classifier.classified,
        draws_used=draws_used,
        draws=draws,
        class_counts=counts,
    )
