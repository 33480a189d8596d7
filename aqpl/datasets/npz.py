""".npz archives: x_train, y_train, x_test, y_test and optional class_names, never a pickle.

Members are read one at a time through zipfile (whose reads stop at each member's declared size)
after the declared sizes have been claimed against the limits; each .npy header is checked before
its data is allocated or read.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
)

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
NPY_MAGIC = b"\x93NUMPY"  # an .npy file: a single array, not an archive


@dataclass
class _Member:
    """One .npy member whose header has been read: the stream stands at its first data byte."""

    key: str
    stream: IO[bytes]
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    size: int  # data bytes the header declares


class _Archive:
    def __init__(self, archive: zipfile.ZipFile, file_name: str, budget: Budget, keep: bool) -> None:
        self.archive, self.file_name, self.budget, self.keep = archive, file_name, budget, keep
        self.members = {info.filename: info for info in archive.infolist()}

    def broken(self, error: Exception, _done: bool) -> DatasetError:
        return DatasetError(f"{self.file_name}: not a readable .npz archive (truncated or corrupt): {error}")

    def has(self, key: str) -> bool:
        return f"{key}.npy" in self.members

    def open(self, key: str) -> _Member:
        info = self.members[f"{key}.npy"]
        stream = self.archive.open(info)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DatasetError(f"{self.file_name}: {key} is a version {version} .npy, expected 1.0 or 2.0")
        if dtype.hasobject:
            raise DatasetError(
                f"{self.file_name}: not a readable .npz archive: {key} holds Python objects (a pickle); "
                "save plain arrays (allow_pickle=False)"
            )
        size = self.budget.array_bytes(shape, dtype.itemsize, f"{self.file_name}: {key}")
        if size > info.file_size:  # never allocate more than the (claimed) member can hold
            raise DatasetError(
                f"{self.file_name}: {key} is truncated: expected {size} bytes, "
                f"the member holds {info.file_size}"
            )
        return _Member(key, stream, tuple(int(side) for side in shape), bool(fortran_order), dtype, size)

    def read(
        self, member: _Member, scan: LabelScan | None = None, *, keep: bool | None = None
    ) -> npt.NDArray[Any] | None:
        """The member's data (None when only inspecting, unless `keep`), through `scan` chunk by chunk."""
        buffer = bytearray(member.size) if (self.keep if keep is None else keep) else None
        with member.stream:
            read_body(
                member.stream,
                member.size,
                f"{self.file_name}: {member.key}",
                "bytes",
                self.broken,
                into=buffer,
                scan=None if scan is None else scan.reader(member.dtype),
            )
        if buffer is None:
            return None
        array: npt.NDArray[Any] = np.frombuffer(buffer, dtype=member.dtype)
        return array.reshape(member.shape, order="F" if member.fortran_order else "C")

    def images(self, key: str) -> tuple[tuple[int, ...], npt.NDArray[np.uint8] | None]:
        member = self.open(key)
        shape = member.shape
        if member.dtype != np.uint8:
            raise DatasetError(f"{self.file_name}: {key} must be uint8, got {member.dtype}")
        if len(shape) == 3:
            shape = (*shape, 1)
        if len(shape) != 4 or shape[3] not in (1, 3):
            raise DatasetError(
                f"{self.file_name}: {key} must have shape (N, H, W) or (N, H, W, C) with C in {{1, 3}}, "
                f"got {member.shape}"
            )
        check_image_sides(shape[1], shape[2], f"{self.file_name}: {key}")
        array = self.read(member)
        return shape, None if array is None else np.ascontiguousarray(array.reshape(shape))

    def labels(
        self, key: str, count: int, images_key: str, num_classes: int | None
    ) -> tuple[LabelScan, npt.NDArray[np.int64] | None]:
        member = self.open(key)
        if member.dtype.kind not in "iu" or len(member.shape) != 1:
            raise DatasetError(
                f"{self.file_name}: {key} must be a 1-D integer array, got {member.dtype} {member.shape}"
            )
        if member.shape[0] != count:
            raise DatasetError(
                f"{self.file_name}: {member.shape[0]} labels in {key} but {count} images in {images_key}"
            )
        scan = LabelScan(num_classes)
        array = self.read(member, scan)
        if scan.first_negative is not None:
            index, label = scan.first_negative
            raise DatasetError(f"{self.file_name}: {key} label {label} at index {index} is negative")
        return scan, None if array is None else array.astype(np.int64)

    def class_names(self) -> tuple[str, ...]:
        member = self.open("class_names")
        if member.dtype.kind != "U" or len(member.shape) != 1 or member.shape[0] == 0:
            raise DatasetError(f"{self.file_name}: class_names must be a non-empty 1-D array of strings")
        names = self.read(member, keep=True)  # read whole even when inspecting: the label checks need them
        return () if names is None else tuple(str(name) for name in names)


def read(path: Path, budget: Budget, *, keep: bool, guard: Guard) -> tuple[DatasetInfo, ImageDataset | None]:
    file_name = path.name
    if not path.is_file():  # a folder, or a pipe or device that would block or never end
        raise DatasetError(f"{file_name}: expected an .npz file")
    guard(path)
    try:
        with path.open("rb") as stream:
            if stream.read(len(NPY_MAGIC)) == NPY_MAGIC:
                raise DatasetError(f"{file_name}: not an .npz archive (it holds a single array)")
            stream.seek(0)
            with zipfile.ZipFile(stream) as archive:
                return _read(_Archive(archive, file_name, budget, keep), path.stem)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
        # Corrupt or truncated data, an unknown compression, a password.
        raise DatasetError(
            f"{file_name}: not a readable .npz archive (truncated or corrupt): {error}"
        ) from error
    except (ValueError, OSError) as error:  # a bad .npy header
        raise DatasetError(f"{file_name}: not a readable .npz archive: {error}") from error


def _read(archive: _Archive, name: str) -> tuple[DatasetInfo, ImageDataset | None]:
    file_name = archive.file_name
    missing = [key for key in NPZ_ARRAYS if not archive.has(key)]
    if missing:
        raise DatasetError(f"{file_name}: missing array(s) {', '.join(missing)}")
    keys = [*NPZ_ARRAYS, *(["class_names"] if archive.has("class_names") else [])]
    # Declared sizes from the zip directory, before anything is decompressed.
    declared = sum(archive.members[f"{key}.npy"].file_size for key in keys)
    archive.budget.claim(declared, f"{file_name}: unpacks to {declared} bytes")
    names = archive.class_names() if archive.has("class_names") else None
    train_shape, x_train = archive.images("x_train")
    test_shape, x_test = archive.images("x_test")
    num_classes = None if names is None else len(names)
    train_scan, y_train = archive.labels("y_train", train_shape[0], "x_train", num_classes)
    test_scan, y_test = archive.labels("y_test", test_shape[0], "x_test", num_classes)
    if train_shape[1:] != test_shape[1:]:
        raise DatasetError(
            f"{file_name}: x_train images are {train_shape[1:]} but x_test images are {test_shape[1:]}"
        )
    if names is None:
        largest = max([scan.maximum for scan in (train_scan, test_scan) if scan.count], default=0)
        names = tuple(str(label) for label in range(largest + 1))
    else:
        train_scan.check_range(f"{file_name}: y_train")
        test_scan.check_range(f"{file_name}: y_test")
    height, width, channels = train_shape[1:]
    info = DatasetInfo(name, train_shape[0], test_shape[0], (height, width, channels), names, declared)
    if x_train is None or y_train is None or x_test is None or y_test is None:
        return info, None
    return info, ImageDataset(name, x_train, y_train, x_test, y_test, names)
