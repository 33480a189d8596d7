"""What every dataset reader shares: the error, the limits, the results, and bounded reading.

NumPy only (no torch): the API validates with these readers and the worker loads with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

DATASET_FORMATS = ("mnist", "cifar10", "npz", "imagefolder", "digits")
# Decompressed bytes a dataset may hold (all its images and labels together), checked from headers
# before anything is read. The full MNIST is 55 MB and CIFAR-10 184 MB; 2 GiB leaves room for larger
# sets while one worker still holds the arrays and the copies an import makes. Callers pass their own
# (the platform: AQPL_MAX_DATASET_BYTES); this is the default of every reader.
DEFAULT_MAX_BYTES = 2 * 1024**3
# A declared image side above this is refused on its own, before any product of sizes is formed.
MAX_IMAGE_SIDE = 1 << 16
READ_CHUNK = 1 << 20  # bytes per read: inspection holds one chunk of decompressed data at a time


class DatasetError(ValueError):
    """A dataset file or folder that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class DatasetLimits:
    """How much a dataset may declare; every reader checks this before it allocates or decompresses."""

    max_bytes: int = DEFAULT_MAX_BYTES  # decompressed bytes of all images and labels together
    setting: str = ""  # what raises the limit (e.g. "AQPL_MAX_DATASET_BYTES"), named in refusals

    @property
    def hint(self) -> str:
        return f" ({self.setting})" if self.setting else ""


# Called with every file and folder before a reader opens it (the API refuses links out of its root).
Guard = Callable[[Path], None]


def no_guard(_path: Path) -> None:
    return None


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds, from its headers: sizes, image shape (H, W, C), classes, bytes."""

    name: str
    num_train: int
    num_test: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    bytes: int  # decompressed bytes of the files' images and labels, the figure checked against limits


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Train and test images (uint8 NHWC, C in {1, 3}) with int64 labels indexing `class_names`."""

    name: str
    x_train: npt.NDArray[np.uint8]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.uint8]
    y_test: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.class_names:
            raise DatasetError(f"{self.name}: no class names")
        for split, images, labels in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
                raise DatasetError(
                    f"{self.name}: {split} images must be uint8 (N, H, W, C) with C in {{1, 3}}, "
                    f"got {images.dtype} {images.shape}"
                )
            if labels.dtype != np.int64 or labels.ndim != 1:
                raise DatasetError(f"{self.name}: {split} labels must be int64 (N,), got {labels.dtype}")
            if len(labels) != len(images):
                raise DatasetError(f"{self.name}: {split} has {len(images)} images but {len(labels)} labels")
            check_label_range(labels, len(self.class_names), f"{self.name}: {split} labels")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                f"{self.name}: train images are {self.x_train.shape[1:]} but test images are "
                f"{self.x_test.shape[1:]}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        height, width, channels = self.x_train.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def info(self, nbytes: int) -> DatasetInfo:
        return DatasetInfo(
            self.name, len(self.y_train), len(self.y_test), self.image_shape, self.class_names, nbytes
        )


class Budget:
    """Decompressed bytes claimed so far against the limit, in Python integers (no overflow)."""

    def __init__(self, limits: DatasetLimits) -> None:
        self.limits = limits
        self.used = 0

    def claim(self, size: int, declared: str) -> None:
        """Add `size` bytes; `declared` starts the refusal, e.g. "a.npz: unpacks to 9 bytes"."""
        total = self.used + size
        if total > self.limits.max_bytes:
            before = f", {total} bytes with the files before it" if self.used else ""
            raise DatasetError(
                f"{declared}{before}, more than the {self.limits.max_bytes} allowed{self.limits.hint}"
            )
        self.used = total

    def array_bytes(self, shape: Sequence[int], itemsize: int, where: str) -> int:
        """Bytes of a declared array shape, in Python integers, with every dimension capped as well.

        A product over the limit is left to `claim` to refuse; the cap catches the shapes whose
        product is small only because a dimension is 0 (no image of 0 x 2**32 pixels is data).
        """
        size = math.prod(int(dimension) for dimension in shape) * itemsize
        if size <= self.limits.max_bytes:
            for dimension in shape:
                if dimension > self.limits.max_bytes:
                    raise DatasetError(
                        f"{where}: declares shape {tuple(shape)}, whose dimension {dimension} alone is more "
                        f"than the {self.limits.max_bytes} bytes allowed{self.limits.hint}"
                    )
        return size


def check_image_sides(height: int, width: int, where: str) -> None:
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise DatasetError(f"{where}: images of {height}x{width} pixels: a side is over {MAX_IMAGE_SIDE}")


class LabelScan:
    """Label statistics gathered chunk by chunk, so that a label file is checked without holding it."""

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.count = 0
        self.maximum = -1
        self.first_negative: tuple[int, int] | None = None  # (index, label)
        self.first_outside: tuple[int, int] | None = None  # (index, label) outside 0..num_classes-1
        self.outside = 0

    def add(self, labels: npt.NDArray[np.integer[Any]]) -> None:
        if len(labels):
            self.maximum = max(self.maximum, int(labels.max()))
            if self.first_negative is None and int(labels.min()) < 0:
                index = int(np.flatnonzero(labels < 0)[0])
                self.first_negative = (self.count + index, int(labels[index]))
            if self.num_classes is not None:
                bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
                if len(bad) and self.first_outside is None:
                    self.first_outside = (self.count + int(bad[0]), int(labels[bad[0]]))
                self.outside += len(bad)
        self.count += len(labels)

    def reader(self, dtype: np.dtype[Any]) -> Callable[[bytes], None]:
        """A `read_body` scan adding the labels of each chunk (a value split between chunks is joined)."""
        pending = b""

        def add(chunk: bytes) -> None:
            nonlocal pending
            data = pending + chunk if pending else chunk
            whole = len(data) - len(data) % dtype.itemsize
            self.add(np.frombuffer(data[:whole], dtype=dtype))
            pending = data[whole:]

        return add

    def check_range(self, where: str) -> None:
        if self.first_outside is not None and self.num_classes is not None:
            index, label = self.first_outside
            raise DatasetError(
                f"{where}: label {label} at index {index} is outside 0..{self.num_classes - 1} "
                f"({self.outside} labels out of range)"
            )


def check_label_range(labels: npt.NDArray[np.integer[Any]], num_classes: int, where: str) -> None:
    scan = LabelScan(num_classes)
    scan.add(labels)
    scan.check_range(where)


# How a failed read is told: (the error, whether every declared byte had been read) -> the refusal.
BrokenStream = Callable[[Exception, bool], DatasetError]


def read_exactly(stream: IO[bytes], size: int, where: str, what: str, broken: BrokenStream) -> bytes:
    """A small fixed-size piece (a header): exactly `size` bytes or a refusal naming the shortfall."""
    try:
        data = stream.read(size)
    except Exception as error:  # EOFError, OSError, zlib.error, zipfile.BadZipFile
        raise broken(error, False) from error
    if len(data) != size:
        raise DatasetError(f"{where}: truncated: expected {size} {what}, found {len(data)}")
    return data


def read_body(
    stream: IO[bytes],
    size: int,
    where: str,
    what: str,
    broken: BrokenStream,
    *,
    into: bytearray | None = None,
    scan: Callable[[bytes], None] | None = None,
) -> None:
    """Read the `size` bytes a header declared, chunk by chunk, into `into` and/or through `scan`.

    At most size + 1 bytes are ever decompressed: a stream that goes on past its header is refused
    after one extra byte however far it would expand, and one that ends early says how much it held.
    """
    found = 0
    while found <= size:
        try:
            chunk = stream.read(min(READ_CHUNK, size + 1 - found))
        except Exception as error:  # EOFError, OSError, zlib.error, zipfile.BadZipFile (a bad CRC)
            raise broken(error, found >= size) from error
        if not chunk:
            break
        if found + len(chunk) > size:
            raise DatasetError(f"{where}: unexpected data after the {size} {what} the header declares")
        if into is not None:
            into[found : found + len(chunk)] = chunk
        if scan is not None:
            scan(chunk)
        found += len(chunk)
    if found < size:
        raise DatasetError(f"{where}: truncated: expected {size} {what}, found {found}")
