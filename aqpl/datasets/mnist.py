"""MNIST's idx files (plain or .gz): the one parser of the idx format, for inspection and loading."""

from __future__ import annotations

import gzip
import math
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import numpy.typing as npt

from aqpl.datasets.base import (
    Budget,
    DatasetError,
    DatasetInfo,
    Guard,
    ImageDataset,
    LabelScan,
    check_image_sides,
    read_body,
    read_exactly,
)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(10))


@dataclass
class _IdxFile:
    """An open idx file whose header has been read: the stream stands at the first data byte."""

    name: str
    stream: BinaryIO
    shape: tuple[int, ...]
    what: str  # "pixel bytes" or "label bytes"

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python integers, never an overflowing int64

    def broken(self, error: Exception, done: bool) -> DatasetError:
        if done:
            return DatasetError(f"{self.name}: corrupt gzip stream after the data: {error}")
        if isinstance(error, EOFError):
            return DatasetError(f"{self.name}: truncated gzip stream while reading {self.what}: {error}")
        return DatasetError(f"{self.name}: corrupt gzip stream while reading {self.what}: {error}")


def find_folder(path: Path) -> Path:
    if path.is_file():
        raise DatasetError(f"{path}: expected the folder holding the MNIST idx files, got a file")
    for candidate in (path, path / "MNIST" / "raw", path / "raw", path / "mnist"):
        if any((candidate / (MNIST_FILES["train_images"] + suffix)).is_file() for suffix in ("", ".gz")):
            return candidate
    return path


def _open(folder: Path, stem: str, guard: Guard) -> tuple[str, BinaryIO]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            guard(candidate)
            if candidate.suffix == ".gz":
                return candidate.name, cast(BinaryIO, gzip.open(candidate, "rb"))
            return candidate.name, candidate.open("rb")
    raise DatasetError(f"{folder / stem}: missing file ({stem} or {stem}.gz)")


def _read_header(name: str, stream: BinaryIO, ndim: int, budget: Budget) -> _IdxFile:
    """Magic 0x0000 08 <ndim> (unsigned bytes), then `ndim` big-endian uint32 sizes; claims the data."""
    what = "pixel bytes" if ndim > 1 else "label bytes"
    idx = _IdxFile(name, stream, (), what)
    (magic,) = struct.unpack(">I", read_exactly(stream, 4, name, "header bytes", idx.broken))
    if magic != 0x0800 + ndim:
        raise DatasetError(
            f"{name}: bad magic number 0x{magic:08x}, expected 0x{0x0800 + ndim:08x} "
            f"(unsigned-byte idx file with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    idx.shape = struct.unpack(f">{ndim}I", read_exactly(stream, 4 * ndim, name, "size bytes", idx.broken))
    size = budget.array_bytes(idx.shape, 1, name)
    budget.claim(size, f"{name}: header declares {size} {what}")
    if ndim > 1:
        check_image_sides(idx.shape[1], idx.shape[2], name)
    return idx


def read(path: Path, budget: Budget, *, keep: bool, guard: Guard) -> tuple[DatasetInfo, ImageDataset | None]:
    """Every header first (sizes claimed before a data byte is read), then each file's data."""
    folder = find_folder(path)
    with ExitStack() as stack:
        files: dict[str, _IdxFile] = {}
        for key, stem in MNIST_FILES.items():
            name, stream = _open(folder, stem, guard)
            stack.enter_context(stream)
            files[key] = _read_header(name, stream, 3 if key.endswith("images") else 1, budget)
        splits: list[tuple[npt.NDArray[np.uint8] | None, npt.NDArray[np.int64] | None]] = []
        for split in ("train", "test"):
            images, labels = files[f"{split}_images"], files[f"{split}_labels"]
            images_stem, labels_stem = MNIST_FILES[f"{split}_images"], MNIST_FILES[f"{split}_labels"]
            if labels.shape[0] != images.shape[0]:
                raise DatasetError(
                    f"{labels_stem}: {labels.shape[0]} labels but {images_stem} has {images.shape[0]} images"
                )
            pixels = bytearray(images.size) if keep else None
            read_body(images.stream, images.size, images.name, images.what, images.broken, into=pixels)
            scan = LabelScan(len(MNIST_CLASS_NAMES))
            label_bytes = bytearray(labels.size) if keep else None
            read_body(
                labels.stream,
                labels.size,
                labels.name,
                labels.what,
                labels.broken,
                into=label_bytes,
                scan=scan.reader(np.dtype(np.uint8)),
            )
            scan.check_range(labels_stem)
            splits.append(
                (
                    None if pixels is None else np.frombuffer(pixels, np.uint8).reshape((*images.shape, 1)),
                    None if label_bytes is None else np.frombuffer(label_bytes, np.uint8).astype(np.int64),
                )
            )
    train_shape, test_shape = files["train_images"].shape, files["test_images"].shape
    if train_shape[1:] != test_shape[1:]:
        raise DatasetError(
            f"{MNIST_FILES['test_images']}: images are {test_shape[1:3]} but the training images are "
            f"{train_shape[1:3]}"
        )
    info = DatasetInfo(
        "mnist",
        train_shape[0],
        test_shape[0],
        (train_shape[1], train_shape[2], 1),
        MNIST_CLASS_NAMES,
        budget.used,
    )
    (x_train, y_train), (x_test, y_test) = splits
    if x_train is None or y_train is None or x_test is None or y_test is None:
        return info, None
    return info, ImageDataset("mnist", x_train, y_train, x_test, y_test, MNIST_CLASS_NAMES)
