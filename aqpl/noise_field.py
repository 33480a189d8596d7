"""The fixed noise field ε of an example and the one rendering formula clip(x + σ·ε, 0, 1).

The annotator's σ-ladder, the server's PNG rendering and the browser's canvas all use
these two functions (the browser re-implements `render_at_sigma` in JavaScript and a
browser test checks the two agree), so that moving the slider changes only σ.
NumPy only: the API process imports this and never imports torch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aqpl.ladder import sigma_of


def noise_field(shape: tuple[int, ...], *, project_seed: int, example_index: int) -> npt.NDArray[np.float32]:
    """ε ~ N(0, I) of the given shape, fixed by (project seed, example_index).

    The API passes the example's database id (`Example.id`, unique across projects and splits) as
    `example_index`, not its `dataset_index` (its row in the split): ε is keyed on the id.
    """
    rng = np.random.default_rng([project_seed, example_index])
    return rng.standard_normal(shape, dtype=np.float32)


def render_at_sigma(
    image: npt.NDArray[np.uint8], epsilon: npt.NDArray[np.float32], sigma_index: int
) -> npt.NDArray[np.uint8]:
    """uint8 image of clip(x + σ·ε, 0, 1) with x = image / 255, rounded to the nearest grey level."""
    sigma = np.float32(sigma_of(sigma_index))
    pixels = image.astype(np.float32) / np.float32(255.0)
    noisy = np.clip(pixels + sigma * epsilon, 0.0, 1.0)
    return np.rint(noisy * np.float32(255.0)).astype(np.uint8)
