"""A quick, synchronous check of a dataset before a project is made from it (NumPy and Pillow, no torch).

The worker's loader (worker/ml/datasets.py) reads every pixel and stays the full check. This one reads
headers, label arrays and image headers, so that the usual mistakes (a truncated or pickled file,
labels that do not match the images or fall outside the classes, images of mixed sizes, files that
are not images, decompression bombs, links out of the import root) are a 422 naming the file and the
problem before any project row or file exists. Its messages follow the worker's (docs/datasets.md).
"""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from backend.errors import InvalidInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = 10
CIFAR_FOLDER_NAME = "cifar-10-batches-py"
CIFAR_FILES = (*(f"data_batch_{number}" for number in range(1, 6)), "test_batch", "batches.meta")
# Bytes a dataset may declare once decompressed (pixels and labels): the full MNIST is 55 MB and
# CIFAR-10 180 MB; 4 GiB leaves room for larger sets while a bomb is refused before it is read.
MAX_DECLARED_BYTES = 4 * 1024**3
READ_CHUNK = 1 << 20  # bytes per read while counting decompressed data


def check_dataset(dataset_format: str, path: Path, import_root: Path) -> None:
    """Raise InvalidInput naming the file and the problem if `path` cannot be a `dataset_format` dataset."""
    root = import_root.resolve()
    if dataset_format == "mnist":
        _check_mnist(path, root)
    elif dataset_format == "npz":
        _check_npz(path)
    elif dataset_format == "imagefolder":
        _check_imagefolder(path, root)
    elif dataset_format == "cifar10":
        _check_cifar10(path, root)


def _ensure_inside(file: Path, root: Path, shown: str) -> None:
    resolved = file.resolve()
    if resolved != root and root not in resolved.parents:
        raise InvalidInput(f"{shown}: a link that points outside the import root; copy the file instead")


def _shown(file: Path, base: Path) -> str:
    """A file as messages show it: relative to the dataset folder (server paths stay private)."""
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.name


def _check_label_range(labels: npt.NDArray[Any], num_classes: int, where: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        first = int(bad[0])
        raise InvalidInput(
            f"{where}: label {int(labels[first])} at index {first} is outside 0..{num_classes - 1} "
            f"({len(bad)} labels out of range)"
        )


# ---------------------------------------------------------------- MNIST (idx files)


def _mnist_folder(path: Path) -> Path:
    for candidate in (path, path / "MNIST" / "raw", path / "raw", path / "mnist"):
        if any((candidate / (MNIST_FILES["train"][0] + suffix)).is_file() for suffix in ("", ".gz")):
            return candidate
    return path


def _open_idx(folder: Path, stem: str, root: Path) -> tuple[str, IO[bytes]]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            _ensure_inside(candidate, root, candidate.name)
            if candidate.suffix == ".gz":
                return candidate.name, cast(IO[bytes], gzip.open(candidate, "rb"))
            return candidate.name, candidate.open("rb")
    raise InvalidInput(f"{stem}: missing file ({stem} or {stem}.gz) in the MNIST folder")


def _read(stream: IO[bytes], size: int, file_name: str, what: str) -> bytes:
    try:
        return stream.read(size)
    except EOFError as error:
        raise InvalidInput(f"{file_name}: truncated gzip stream while reading {what}: {error}") from error
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise InvalidInput(f"{file_name}: corrupt gzip stream while reading {what}: {error}") from error


def _read_idx(folder: Path, stem: str, ndim: int, root: Path, *, keep: bool) -> tuple[tuple[int, ...], bytes]:
    """(shape, data if keep) of an unsigned-byte idx file, after checking its length against its header."""
    file_name, stream = _open_idx(folder, stem, root)
    what = "pixel bytes" if ndim > 1 else "label bytes"
    with stream:
        header = _read(stream, 4 + 4 * ndim, file_name, "header bytes")
        if len(header) != 4 + 4 * ndim:
            raise InvalidInput(f"{file_name}: truncated: the idx header is {len(header)} bytes")
        (magic,) = struct.unpack(">I", header[:4])
        if magic != 0x0800 + ndim:
            raise InvalidInput(
                f"{file_name}: bad magic number 0x{magic:08x}, expected 0x{0x0800 + ndim:08x} "
                f"(unsigned-byte idx file with {ndim} dimension{'s' if ndim > 1 else ''})"
            )
        shape = struct.unpack(f">{ndim}I", header[4:])
        size = int(np.prod(shape, dtype=np.int64))
        if size > MAX_DECLARED_BYTES:
            raise InvalidInput(f"{file_name}: header declares {size} {what}, more than {MAX_DECLARED_BYTES}")
        kept: list[bytes] = []
        found = 0
        while found <= size:
            chunk = _read(stream, min(READ_CHUNK, size + 1 - found), file_name, what)
            if not chunk:
                break
            found += len(chunk)
            if keep:
                kept.append(chunk)
    if found < size:
        raise InvalidInput(f"{file_name}: truncated: expected {size} {what}, found {found}")
    if found > size:
        raise InvalidInput(f"{file_name}: unexpected data after the {size} {what} the header declares")
    return shape, b"".join(kept)[:size]


def _check_mnist(path: Path, root: Path) -> None:
    if not path.is_dir():
        raise InvalidInput(f"{path.name}: expected the folder holding the MNIST idx files, got a file")
    folder = _mnist_folder(path)
    sides: dict[str, tuple[int, ...]] = {}
    for split, (images_stem, labels_stem) in MNIST_FILES.items():
        images_shape, _ = _read_idx(folder, images_stem, 3, root, keep=False)
        _, data = _read_idx(folder, labels_stem, 1, root, keep=True)
        labels = np.frombuffer(data, dtype=np.uint8)
        if len(labels) != images_shape[0]:
            raise InvalidInput(
                f"{labels_stem}: {len(labels)} labels but {images_stem} has {images_shape[0]} images"
            )
        _check_label_range(labels, MNIST_CLASSES, labels_stem)
        sides[split] = images_shape[1:]
    if sides["train"] != sides["test"]:
        raise InvalidInput(
            f"{MNIST_FILES['test'][0]}: images are {sides['test']} "
            f"but the training images are {sides['train']}"
        )


# ---------------------------------------------------------------- .npz


def _npz_member(archive: zipfile.ZipFile, key: str, name: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, data bytes found) of one array, read to the end so truncation and CRC errors show."""
    with archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise InvalidInput(
                f"{name}: {key} holds Python objects (a pickle); save plain arrays (allow_pickle=False)"
            )
        found = 0
        while chunk := stream.read(READ_CHUNK):
            found += len(chunk)
    return tuple(int(size) for size in shape), dtype, found


def _npz_array(archive: zipfile.ZipFile, key: str) -> npt.NDArray[Any]:
    with archive.open(f"{key}.npy") as stream:
        array: npt.NDArray[Any] = np.lib.format.read_array(stream, allow_pickle=False)
    return array


def _image_shape(key: str, shape: tuple[int, ...], dtype: np.dtype[Any], name: str) -> tuple[int, ...]:
    if dtype != np.uint8:
        raise InvalidInput(f"{name}: {key} must be uint8, got {dtype}")
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise InvalidInput(
            f"{name}: {key} must have shape (N, H, W) or (N, H, W, C) with C in {{1, 3}}, got {shape}"
        )
    return shape


def _check_npz(path: Path) -> None:
    name = path.name
    if not path.is_file():
        raise InvalidInput(f"{name}: expected an .npz file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            declared = sum(info.file_size for info in members.values())
            if declared > MAX_DECLARED_BYTES:
                raise InvalidInput(f"{name}: unpacks to {declared} bytes, more than {MAX_DECLARED_BYTES}")
            keys = ("x_train", "y_train", "x_test", "y_test")
            missing = [key for key in keys if f"{key}.npy" not in members]
            if missing:
                raise InvalidInput(f"{name}: missing array(s) {', '.join(missing)}")
            shapes: dict[str, tuple[int, ...]] = {}
            for key in (*keys, "class_names"):
                if f"{key}.npy" not in members:
                    continue
                shape, dtype, found = _npz_member(archive, key, name)
                expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if found != expected:
                    raise InvalidInput(
                        f"{name}: {key} is truncated: expected {expected} bytes, found {found}"
                    )
                shapes[key] = _image_shape(key, shape, dtype, name) if key.startswith("x_") else shape
            labels = {key: _npz_array(archive, key) for key in ("y_train", "y_test")}
            names = _npz_array(archive, "class_names") if "class_names.npy" in members else None
    except InvalidInput:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, struct.error) as error:
        raise InvalidInput(f"{name}: not a readable .npz archive (truncated or corrupt): {error}") from error
    for split in ("train", "test"):
        key, images_key = f"y_{split}", f"x_{split}"
        values, count = labels[key], shapes[images_key][0]
        if values.dtype.kind not in "iu" or values.ndim != 1:
            raise InvalidInput(
                f"{name}: {key} must be a 1-D integer array, got {values.dtype} {values.shape}"
            )
        if len(values) != count:
            raise InvalidInput(f"{name}: {len(values)} labels in {key} but {count} images in {images_key}")
        if len(values) and int(values.min()) < 0:
            first = int(np.flatnonzero(values < 0)[0])
            raise InvalidInput(f"{name}: {key} label {int(values[first])} at index {first} is negative")
    if shapes["x_train"][1:] != shapes["x_test"][1:]:
        raise InvalidInput(
            f"{name}: x_train images are {shapes['x_train'][1:]} but x_test images are {shapes['x_test'][1:]}"
        )
    if names is not None:
        if names.dtype.kind != "U" or names.ndim != 1 or len(names) == 0:
            raise InvalidInput(f"{name}: class_names must be a non-empty 1-D array of strings")
        for key, values in labels.items():
            _check_label_range(values, len(names), f"{name}: {key}")


# ---------------------------------------------------------------- class-per-folder images


def _image_header(file: Path, shown: str) -> tuple[tuple[int, int], str]:
    """(width, height) and mode of an image, from its header and a structural check (no decoding)."""
    try:
        with Image.open(file) as image:
            size, mode = image.size, image.mode
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and size[0] * size[1] > limit:
                raise Image.DecompressionBombError(f"{size[0]}x{size[1]} pixels, more than {limit}")
            image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInput(
            f"{shown}: too many pixels (Pillow's decompression-bomb limit): {error}"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as error:
        raise InvalidInput(f"{shown}: unreadable image: {error}") from error
    mode = "L" if mode == "1" else mode
    if mode not in ("L", "RGB"):
        raise InvalidInput(f"{shown}: image mode {mode} is not supported (save as 8-bit grey 'L' or 'RGB')")
    return size, mode


def _class_folders(split_folder: Path, shown: str) -> list[Path]:
    if not split_folder.is_dir():
        raise InvalidInput(f"{shown}: missing folder (expected {shown}/<class>/*.png)")
    folders = sorted(
        entry for entry in split_folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not folders:
        raise InvalidInput(f"{shown}: no class folders")
    return folders


def _check_imagefolder(path: Path, root: Path) -> None:
    if not path.is_dir():
        raise InvalidInput(f"{path.name}: expected a folder with train/ and test/ class folders")
    folders = {split: _class_folders(path / split, split) for split in ("train", "test")}
    class_names = {folder.name for folder in folders["train"]}
    reference: tuple[str, tuple[int, int], str] | None = None
    for split, class_folders in folders.items():
        images = 0
        for class_folder in class_folders:
            _ensure_inside(class_folder, root, _shown(class_folder, path))
            if class_folder.name not in class_names:
                raise InvalidInput(
                    f"{_shown(class_folder, path)}: class {class_folder.name!r} has no train/ folder"
                )
            for file in sorted(class_folder.iterdir()):
                if file.name.startswith("."):
                    continue  # .DS_Store and editor droppings are not data
                shown = _shown(file, path)
                _ensure_inside(file, root, shown)
                if file.is_dir():
                    raise InvalidInput(f"{shown}: unexpected folder inside a class folder")
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    raise InvalidInput(f"{shown}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
                size, mode = _image_header(file, shown)
                if reference is None:
                    reference = (shown, size, mode)
                elif size != reference[1]:
                    raise InvalidInput(
                        f"{shown}: size {size[0]}x{size[1]} differs from "
                        f"{reference[1][0]}x{reference[1][1]} of {reference[0]}"
                    )
                elif mode != reference[2]:
                    raise InvalidInput(f"{shown}: mode {mode} differs from {reference[2]} of {reference[0]}")
                images += 1
        if images == 0:
            raise InvalidInput(f"{split}: no images")


# ---------------------------------------------------------------- CIFAR-10 (python batches)


def _check_cifar10(path: Path, root: Path) -> None:
    """Only the files' presence: their pickles are read by the worker's restricted unpickler alone."""
    folder = path / CIFAR_FOLDER_NAME if (path / CIFAR_FOLDER_NAME).is_dir() else path
    if not folder.is_dir():
        raise InvalidInput(f"{path.name}: expected the {CIFAR_FOLDER_NAME} folder, got a file")
    for file_name in CIFAR_FILES:
        file = folder / file_name
        if not file.is_file() or file.stat().st_size == 0:
            raise InvalidInput(f"{file_name}: missing or empty file in the CIFAR-10 folder")
        _ensure_inside(file, root, file_name)
