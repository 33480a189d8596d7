"""scikit-learn's bundled 8x8 digits (no download), shown and trained at 32x32 grey."""

from __future__ import annotations

import numpy as np
from PIL import Image

from aqpl.datasets.base import ImageDataset
from aqpl.datasets.subsets import stratified_subset

DIGITS_SIDE = 32  # the 8x8 digits are shown and trained at 32x32, the size of the other datasets
DIGITS_TEST_FRACTION = 0.2
# Fixed so the digits test set never depends on the caller's seed (which only drives the limits).
DIGITS_SPLIT_SEED = 0


def load() -> ImageDataset:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    # 8x8 values 0..16 -> 0..255 grey, then bilinear to 32x32 so the digits look like digits when shown.
    small = np.rint(np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack(
        [
            np.asarray(
                Image.fromarray(image, mode="L").resize((DIGITS_SIDE, DIGITS_SIDE), Image.Resampling.BILINEAR)
            )
            for image in small
        ]
    )[..., np.newaxis]
    labels = np.asarray(digits.target, dtype=np.int64)
    test_size = round(len(labels) * DIGITS_TEST_FRACTION)
    test_indices = stratified_subset(labels, test_size, np.random.default_rng(DIGITS_SPLIT_SEED))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_indices] = True
    return ImageDataset(
        "digits",
        images[~is_test],
        labels[~is_test],
        images[is_test],
        labels[is_test],
        tuple(str(name) for name in digits.target_names),
    )
