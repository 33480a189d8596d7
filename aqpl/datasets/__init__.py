"""The one reader of every dataset format, shared by the API (validation) and the worker (import).

MNIST, CIFAR-10 python batches, .npz, class-per-folder images and scikit-learn's digits.
NumPy and Pillow only: the API imports this and never imports torch. Two entry points over the same
per-format parsers:

- `inspect_dataset` reads headers and checks sizes, streaming whatever it must read (label files,
  .npz members) one chunk at a time: counts, image shape, classes and bytes, or a `DatasetError`.
- `load_dataset` reads every pixel into an `ImageDataset` (uint8 NHWC images, int64 labels).

Both refuse, from the headers and before anything is allocated or decompressed, a dataset larger
than `DatasetLimits.max_bytes`; the caller passes the limit (the platform reads it from its
settings), the default lives in `base.DEFAULT_MAX_BYTES`. Every malformed input is one
`DatasetError` whose message starts with the file and says the problem. Nothing here executes code
from the data (see `cifar10` for the pickles). Formats and messages: docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from aqpl.datasets import cifar10, digits, imagefolder, mnist, npz
from aqpl.datasets.base import (
    DATASET_FORMATS,
    Budget,
    DatasetError,
    DatasetInfo,
    DatasetLimits,
    Guard,
    ImageDataset,
    no_guard,
)
from aqpl.datasets.subsets import apply_limits, stratified_subset


class _Reader(Protocol):
    def __call__(
        self, path: Path, budget: Budget, *, keep: bool, guard: Guard
    ) -> tuple[DatasetInfo, ImageDataset | None]: ...


_READERS: dict[str, _Reader] = {
    "mnist": mnist.read,
    "cifar10": cifar10.read,
    "npz": npz.read,
    "imagefolder": imagefolder.read,
}


def load_dataset(
    format: str,
    path: Path | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    limits: DatasetLimits | None = None,
) -> ImageDataset:
    """Load a dataset in one of `DATASET_FORMATS`; limits keep a seeded, class-stratified subset."""
    for limit_name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DatasetError(f"{limit_name}: must be a positive integer, got {limit!r}")
    _info, dataset = _read(format, path, limits or DatasetLimits(), keep=True, guard=no_guard)
    if dataset is None:  # pragma: no cover -- every reader returns the arrays when asked to keep them
        raise DatasetError(f"{format}: the reader returned no arrays")
    return apply_limits(dataset, train_limit=train_limit, test_limit=test_limit, seed=seed)


def inspect_dataset(
    format: str,
    path: Path | None = None,
    *,
    limits: DatasetLimits | None = None,
    guard: Guard = no_guard,
) -> DatasetInfo:
    """What `load_dataset` would find, from headers and a bounded read; `guard` sees each path first."""
    info, _dataset = _read(format, path, limits or DatasetLimits(), keep=False, guard=guard)
    return info


def _read(
    format: str, path: Path | None, limits: DatasetLimits, *, keep: bool, guard: Guard
) -> tuple[DatasetInfo, ImageDataset | None]:
    if format == "digits":
        dataset = digits.load()
        return dataset.info(dataset.x_train.nbytes + dataset.x_test.nbytes), dataset
    if format not in _READERS:
        raise DatasetError(f"{format}: unknown dataset format (expected one of {', '.join(DATASET_FORMATS)})")
    if path is None:
        raise DatasetError(f"{format}: a path is required for this format")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    return _READERS[format](path, Budget(limits), keep=keep, guard=guard)


def describe(dataset: ImageDataset) -> str:
    """One line for logs: name, sizes, shape, classes."""
    height, width, channels = dataset.image_shape
    return (
        f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images, "
        f"{height}x{width}x{channels}, {dataset.num_classes} classes"
    )


__all__ = [
    "DATASET_FORMATS",
    "DatasetError",
    "DatasetInfo",
    "DatasetLimits",
    "ImageDataset",
    "describe",
    "inspect_dataset",
    "load_dataset",
    "stratified_subset",
]
