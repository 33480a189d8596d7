"""Seeded, class-stratified subsets: the train_limit / test_limit of every dataset."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aqpl.datasets.base import ImageDataset


def stratified_subset(
    labels: npt.NDArray[np.int64], limit: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Sorted indices of `limit` examples: classes kept in proportion (largest remainder), random within."""
    if limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact_quota = counts * (limit / len(labels))
    quota = np.floor(exact_quota).astype(np.int64)
    # Largest remainder: the classes that lost most to rounding get the leftover places (stable order).
    leftover = limit - int(quota.sum())
    for class_position in np.argsort(-(exact_quota - quota), kind="stable")[:leftover]:
        quota[class_position] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=int(take), replace=False)
        for label, take in zip(classes, quota, strict=True)
        if take > 0
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def apply_limits(
    dataset: ImageDataset, *, train_limit: int | None, test_limit: int | None, seed: int
) -> ImageDataset:
    if train_limit is None and test_limit is None:
        return dataset
    x_train, y_train, x_test, y_test = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    if train_limit is not None:
        keep = stratified_subset(y_train, train_limit, np.random.default_rng([seed, 0]))
        x_train, y_train = x_train[keep], y_train[keep]
    if test_limit is not None:
        keep = stratified_subset(y_test, test_limit, np.random.default_rng([seed, 1]))
        x_test, y_test = x_test[keep], y_test[keep]
    return ImageDataset(dataset.name, x_train, y_train, x_test, y_test, dataset.class_names)
