"""Image datasets as uint8 NHWC arrays: MNIST idx files, CIFAR-10 python batches, .npz, image folders, digits.

Every loader returns an `ImageDataset` (uint8 (N, H, W, C) images, int64 labels, class names) and turns
every malformed input into one `DatasetError` whose message starts with the file and says the problem,
e.g. ``train-images-idx3-ubyte.gz: truncated: expected 47040000 pixel bytes, found 1000``.
Nothing here executes code from the data: CIFAR-10's pickles go through an unpickler that builds only
plain containers and uint8/int arrays (see `_RestrictedUnpickler`), and .npz files load with
``allow_pickle=False``. Formats and messages are listed in docs/datasets.md.
"""

from __future__ import annotations

import gzip
import pickle  # noqa: TID251 -- CIFAR-10 ships as pickles; _RestrictedUnpickler refuses every global
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, UnidentifiedImageError

DATASET_FORMATS = ("mnist", "cifar10", "npz", "imagefolder", "digits")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(10))
CIFAR_FOLDER_NAME = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_IMAGE_SIDE = 32
# A decompressed idx file larger than this is refused before it is read: the full MNIST training
# images are 47 MB, so 2 GiB leaves room for bigger idx datasets and stops a gzip bomb early.
MAX_IDX_BYTES = 2 * 1024**3
DIGITS_SIDE = 32  # the 8x8 digits are shown and trained at 32x32, the size of the other datasets
DIGITS_TEST_FRACTION = 0.2
# Fixed so the digits test set never depends on the caller's seed (which only drives the limits).
DIGITS_SPLIT_SEED = 0


class DatasetError(ValueError):
    """A dataset file or folder that cannot be loaded; the message names the file and the problem."""


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
            _check_label_range(labels, len(self.class_names), f"{self.name}: {split} labels")
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


def load_dataset(
    format: str,
    path: Path | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a dataset in one of `DATASET_FORMATS`; limits keep a seeded, class-stratified subset."""
    for limit_name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DatasetError(f"{limit_name}: must be a positive integer, got {limit!r}")
    loaders: dict[str, Callable[[Path], ImageDataset]] = {
        "mnist": _load_mnist,
        "cifar10": _load_cifar10,
        "npz": _load_npz,
        "imagefolder": _load_imagefolder,
    }
    if format == "digits":
        dataset = _load_digits()
    elif format in loaders:
        if path is None:
            raise DatasetError(f"{format}: a path is required for this format")
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"{path}: does not exist")
        dataset = loaders[format](path)
    else:
        raise DatasetError(f"{format}: unknown dataset format (expected one of {', '.join(DATASET_FORMATS)})")
    return _apply_limits(dataset, train_limit=train_limit, test_limit=test_limit, seed=seed)


def to_tensor(images: npt.NDArray[np.uint8]) -> torch.Tensor:
    """uint8 NHWC images -> float32 NCHW tensor in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, H, W, C) images, got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


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


def _apply_limits(
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


def _check_label_range(labels: npt.NDArray[np.integer[Any]], num_classes: int, where: str) -> None:
    if len(labels) == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        first = int(bad[0])
        raise DatasetError(
            f"{where}: label {int(labels[first])} at index {first} is outside 0..{num_classes - 1} "
            f"({len(bad)} labels out of range)"
        )


# ---------------------------------------------------------------- MNIST (idx files)


def _find_mnist_folder(path: Path) -> Path:
    if path.is_file():
        raise DatasetError(f"{path}: expected the folder holding the MNIST idx files, got a file")
    for candidate in (path, path / "MNIST" / "raw", path / "raw", path / "mnist"):
        if any((candidate / (MNIST_FILES["train_images"] + suffix)).is_file() for suffix in ("", ".gz")):
            return candidate
    return path


def _open_maybe_gzip(folder: Path, stem: str) -> tuple[Path, BinaryIO]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            if candidate.suffix == ".gz":
                return candidate, cast(BinaryIO, gzip.open(candidate, "rb"))
            return candidate, candidate.open("rb")
    raise DatasetError(f"{folder / stem}: missing file ({stem} or {stem}.gz)")


def _read_exactly(stream: BinaryIO, size: int, file_name: str, what: str) -> bytes:
    try:
        data = stream.read(size)
    except EOFError as error:
        raise DatasetError(f"{file_name}: truncated gzip stream while reading {what}: {error}") from error
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DatasetError(f"{file_name}: corrupt gzip stream while reading {what}: {error}") from error
    if len(data) != size:
        raise DatasetError(f"{file_name}: truncated: expected {size} {what}, found {len(data)}")
    return data


def _read_idx(folder: Path, stem: str, expected_ndim: int) -> npt.NDArray[np.uint8]:
    """One unsigned-byte idx file (magic 0x0000 08 <ndim>, big-endian uint32 sizes, then the bytes)."""
    path, stream = _open_maybe_gzip(folder, stem)
    file_name = path.name
    with stream:
        header = _read_exactly(stream, 4, file_name, "header bytes")
        expected_magic = 0x0800 + expected_ndim
        (magic,) = struct.unpack(">I", header)
        if magic != expected_magic:
            raise DatasetError(
                f"{file_name}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                f"(unsigned-byte idx file with {expected_ndim} dimension{'s' if expected_ndim > 1 else ''})"
            )
        shape = struct.unpack(
            f">{expected_ndim}I", _read_exactly(stream, 4 * expected_ndim, file_name, "size bytes")
        )
        size = int(np.prod(shape, dtype=np.int64))
        what = "pixel bytes" if expected_ndim > 1 else "label bytes"
        if size > MAX_IDX_BYTES:
            raise DatasetError(
                f"{file_name}: header declares {size} {what}, more than the {MAX_IDX_BYTES} allowed"
            )
        data = _read_exactly(stream, size, file_name, what)
        trailing = _read_exactly_or_less(stream, file_name)
        if trailing:
            raise DatasetError(f"{file_name}: unexpected data after the {size} {what} the header declares")
    return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(shape)  # writable, as torch wants


def _read_exactly_or_less(stream: BinaryIO, file_name: str) -> bytes:
    try:
        return stream.read(1)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DatasetError(f"{file_name}: corrupt gzip stream after the data: {error}") from error


def _load_mnist(path: Path) -> ImageDataset:
    folder = _find_mnist_folder(path)
    splits: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for split in ("train", "test"):
        images_stem, labels_stem = MNIST_FILES[f"{split}_images"], MNIST_FILES[f"{split}_labels"]
        images = _read_idx(folder, images_stem, expected_ndim=3)
        labels = _read_idx(folder, labels_stem, expected_ndim=1).astype(np.int64)
        if len(labels) != len(images):
            raise DatasetError(
                f"{labels_stem}: {len(labels)} labels but {images_stem} has {len(images)} images"
            )
        _check_label_range(labels, len(MNIST_CLASS_NAMES), labels_stem)
        splits.append((images[..., np.newaxis], labels))
    (x_train, y_train), (x_test, y_test) = splits
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{MNIST_FILES['test_images']}: images are {x_test.shape[1:3]} but the training images are "
            f"{x_train.shape[1:3]}"
        )
    return ImageDataset("mnist", x_train, y_train, x_test, y_test, MNIST_CLASS_NAMES)


# ---------------------------------------------------------------- CIFAR-10 (python batches)


class _ArrayStub:
    """Stands in for numpy's array reconstructors: records dtype, shape and raw bytes, runs nothing."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.dtype: _DtypeStub | None = None
        self.fortran_order = False
        self.raw: bytes | bytearray | str | None = None

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # numpy's ndarray.__reduce__ state: (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("unexpected ndarray state")
        _version, shape, dtype, fortran_order, raw = state
        self.shape, self.dtype, self.fortran_order, self.raw = tuple(shape), dtype, bool(fortran_order), raw

    def to_array(self) -> npt.NDArray[Any]:
        if not isinstance(self.dtype, _DtypeStub) or self.raw is None:
            raise pickle.UnpicklingError("incomplete ndarray")
        dtype = self.dtype.to_dtype()
        raw = self.raw.encode("latin1") if isinstance(self.raw, str) else bytes(self.raw)
        flat = np.frombuffer(raw, dtype=dtype)
        if flat.size != int(np.prod(self.shape, dtype=np.int64)):
            raise pickle.UnpicklingError(f"ndarray of shape {self.shape} holds {flat.size} values")
        return flat.reshape(self.shape, order="F" if self.fortran_order else "C").astype(
            dtype.newbyteorder("="), copy=True
        )


class _DtypeStub:
    def __init__(self, name: str | bytes, _align: object = False, _copy: object = True) -> None:
        self.name = name.decode("ascii") if isinstance(name, bytes) else str(name)
        self.byte_order = "|"

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # numpy's dtype state: (version, byte order, subdtype, names, fields, itemsize, alignment, flags)
        if isinstance(state, tuple) and len(state) > 1:
            order = state[1]
            self.byte_order = order.decode("ascii") if isinstance(order, bytes) else str(order)

    def to_dtype(self) -> np.dtype[Any]:
        try:
            dtype = np.dtype(self.name)
        except TypeError as error:
            raise pickle.UnpicklingError(f"unknown dtype {self.name!r}") from error
        if dtype.kind not in "uif":
            raise pickle.UnpicklingError(f"dtype {self.name!r} is not a plain number type")
        if self.byte_order in ("<", ">"):
            return dtype.newbyteorder(cast(Literal["<", ">"], self.byte_order))
        return dtype


def _reconstruct_stub(_cls: object, _shape: object, _typecode: object) -> _ArrayStub:
    return _ArrayStub()


def _frombuffer_stub(buffer: object, dtype: object, shape: object, order: object) -> _ArrayStub:
    # numpy's pickle protocol 5 path: _frombuffer(bytes, dtype, shape, order)
    if not isinstance(buffer, bytes | bytearray) or not isinstance(dtype, _DtypeStub):
        raise pickle.UnpicklingError("unexpected _frombuffer arguments")
    stub = _ArrayStub()
    stub.__setstate__(
        (1, tuple(shape) if isinstance(shape, tuple | list) else (), dtype, order == "F", buffer)
    )
    return stub


def _latin1_encode(text: object, encoding: object = "utf-8") -> bytes:
    # Python 3's protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


_NDARRAY_CLASS = object()
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_stub,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_stub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer_stub,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer_stub,
    ("numpy", "ndarray"): _NDARRAY_CLASS,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, strings, bytes and numbers; numpy arrays become inert `_ArrayStub`s.

    `find_class` never imports anything: the few names numpy's array pickles use map to local stubs
    that only record dtype, shape and bytes, and every other global is refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refuses to load the pickled object {module}.{name}") from None


def _plain(value: Any) -> Any:
    """Stubs -> numpy arrays, bytes dictionary keys -> str (Python 2 pickles read with encoding="bytes")."""
    if isinstance(value, _ArrayStub):
        return value.to_array()
    if isinstance(value, dict):
        return {
            (key.decode("latin1") if isinstance(key, bytes) else key): _plain(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, _DtypeStub) or value is _NDARRAY_CLASS:
        raise pickle.UnpicklingError("dangling numpy type object")
    return value


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        with path.open("rb") as stream:
            loaded = _plain(_RestrictedUnpickler(stream, encoding="bytes").load())
    except pickle.UnpicklingError as error:
        raise DatasetError(f"{path.name}: unreadable CIFAR-10 pickle: {error}") from error
    except EOFError as error:
        raise DatasetError(f"{path.name}: truncated: the pickle ends early") from error
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as error:
        raise DatasetError(f"{path.name}: corrupt CIFAR-10 pickle: {error}") from error
    if not isinstance(loaded, dict):
        raise DatasetError(f"{path.name}: expected a pickled dictionary, found {type(loaded).__name__}")
    return loaded


def _cifar_batch(path: Path, num_classes: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    batch = _read_cifar_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(f"{path.name}: missing key {key!r}")
    data = batch["data"]
    pixels_per_image = 3 * CIFAR_IMAGE_SIDE * CIFAR_IMAGE_SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path.name}: 'data' must be a uint8 array of shape (N, {pixels_per_image})")
    if data.shape[1] != pixels_per_image:
        raise DatasetError(
            f"{path.name}: 'data' rows have {data.shape[1]} values, expected {pixels_per_image} (3x32x32)"
        )
    raw_labels = batch["labels"]
    if not isinstance(raw_labels, list) or not all(
        isinstance(label, int) and not isinstance(label, bool) for label in raw_labels
    ):
        raise DatasetError(f"{path.name}: 'labels' must be a list of integers")
    labels = np.asarray(raw_labels, dtype=np.int64)
    if len(labels) != len(data):
        raise DatasetError(f"{path.name}: {len(labels)} labels but {len(data)} images")
    _check_label_range(labels, num_classes, path.name)
    # Rows are channel-major (1024 red, 1024 green, 1024 blue values, each row-major).
    images = data.reshape(-1, 3, CIFAR_IMAGE_SIDE, CIFAR_IMAGE_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _load_cifar10(path: Path) -> ImageDataset:
    folder = path / CIFAR_FOLDER_NAME if (path / CIFAR_FOLDER_NAME).is_dir() else path
    if not folder.is_dir():
        raise DatasetError(f"{path}: expected the {CIFAR_FOLDER_NAME} folder, got a file")
    meta = _read_cifar_pickle(folder / CIFAR_META)
    label_names = meta.get("label_names")
    if not isinstance(label_names, list) or not label_names:
        raise DatasetError(f"{CIFAR_META}: missing or empty 'label_names' list")
    try:
        class_names = tuple(
            name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in label_names
        )
    except UnicodeDecodeError as error:
        raise DatasetError(f"{CIFAR_META}: a label name is not UTF-8: {error}") from error
    train = [_cifar_batch(folder / batch_name, len(class_names)) for batch_name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = _cifar_batch(folder / CIFAR_TEST_BATCH, len(class_names))
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return ImageDataset("cifar10", x_train, y_train, x_test, y_test, class_names)


# ---------------------------------------------------------------- .npz


def _npz_images(archive: Any, key: str, file_name: str) -> npt.NDArray[np.uint8]:
    images = archive[key]
    if images.dtype != np.uint8:
        raise DatasetError(f"{file_name}: {key} must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DatasetError(
            f"{file_name}: {key} must have shape (N, H, W) or (N, H, W, C) with C in {{1, 3}}, "
            f"got {images.shape}"
        )
    return np.ascontiguousarray(images)


def _npz_labels(archive: Any, key: str, file_name: str, count: int, images_key: str) -> npt.NDArray[np.int64]:
    labels = archive[key]
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DatasetError(
            f"{file_name}: {key} must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != count:
        raise DatasetError(f"{file_name}: {len(labels)} labels in {key} but {count} images in {images_key}")
    if len(labels) and int(labels.min()) < 0:
        first = int(np.flatnonzero(labels < 0)[0])
        raise DatasetError(f"{file_name}: {key} label {int(labels[first])} at index {first} is negative")
    return np.asarray(labels, dtype=np.int64)


def _load_npz(path: Path) -> ImageDataset:
    file_name = path.name
    try:
        # Opened here so the file is closed even when numpy rejects it half-way (a truncated zip).
        with path.open("rb") as stream:
            archive = np.load(stream, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DatasetError(f"{file_name}: not an .npz archive (it holds a single array)")
            with archive:
                missing = [
                    key for key in ("x_train", "y_train", "x_test", "y_test") if key not in archive.files
                ]
                if missing:
                    raise DatasetError(f"{file_name}: missing array(s) {', '.join(missing)}")
                x_train = _npz_images(archive, "x_train", file_name)
                x_test = _npz_images(archive, "x_test", file_name)
                y_train = _npz_labels(archive, "y_train", file_name, len(x_train), "x_train")
                y_test = _npz_labels(archive, "y_test", file_name, len(x_test), "x_test")
                names_array = archive["class_names"] if "class_names" in archive.files else None
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{file_name}: not a readable .npz archive (truncated or corrupt): {error}"
        ) from error
    except (ValueError, OSError) as error:
        # numpy says "Object arrays cannot be loaded when allow_pickle=False" for pickled content.
        raise DatasetError(f"{file_name}: not a readable .npz archive: {error}") from error
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{file_name}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}"
        )
    if names_array is not None:
        if names_array.dtype.kind != "U" or names_array.ndim != 1 or len(names_array) == 0:
            raise DatasetError(f"{file_name}: class_names must be a non-empty 1-D array of strings")
        class_names = tuple(str(name) for name in names_array)
    else:
        largest = max([int(labels.max()) for labels in (y_train, y_test) if len(labels)], default=0)
        class_names = tuple(str(label) for label in range(largest + 1))
    _check_label_range(y_train, len(class_names), f"{file_name}: y_train")
    _check_label_range(y_test, len(class_names), f"{file_name}: y_test")
    return ImageDataset(path.stem, x_train, y_train, x_test, y_test, class_names)


# ---------------------------------------------------------------- class-per-folder images


def _image_files(class_folder: Path) -> Iterator[Path]:
    for file in sorted(class_folder.iterdir()):
        if file.name.startswith("."):
            continue  # .DS_Store and editor droppings are not data
        if file.is_dir():
            raise DatasetError(f"{file}: unexpected folder inside a class folder")
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{file}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        yield file


def _read_image(file: Path) -> tuple[npt.NDArray[np.uint8], str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                image.load()
                mode = "L" if image.mode == "1" else image.mode
                if mode not in ("L", "RGB"):
                    raise DatasetError(
                        f"{file}: image mode {image.mode} is not supported (save as 8-bit grey 'L' or 'RGB')"
                    )
                pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise DatasetError(f"{file}: too many pixels (Pillow's decompression-bomb limit): {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{file}: unreadable image: {error}") from error
    return pixels, mode


def _load_imagefolder(path: Path) -> ImageDataset:
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a folder with train/ and test/ class folders")
    class_folders: dict[str, list[Path]] = {}
    for split in ("train", "test"):
        split_folder = path / split
        if not split_folder.is_dir():
            raise DatasetError(f"{split_folder}: missing folder (expected {split}/<class>/*.png)")
        class_folders[split] = sorted(
            folder for folder in split_folder.iterdir() if folder.is_dir() and not folder.name.startswith(".")
        )
        if not class_folders[split]:
            raise DatasetError(f"{split_folder}: no class folders")
    class_names = tuple(folder.name for folder in class_folders["train"])
    reference: tuple[Path, tuple[int, ...], str] | None = None
    arrays: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for split in ("train", "test"):
        images: list[npt.NDArray[np.uint8]] = []
        labels: list[int] = []
        for class_folder in class_folders[split]:
            if class_folder.name not in class_names:
                raise DatasetError(f"{class_folder}: class {class_folder.name!r} has no train/ folder")
            for file in _image_files(class_folder):
                pixels, mode = _read_image(file)
                if reference is None:
                    reference = (file, pixels.shape, mode)
                elif pixels.shape[:2] != reference[1][:2]:
                    height, width = pixels.shape[:2]
                    ref_height, ref_width = reference[1][:2]
                    raise DatasetError(
                        f"{file}: size {width}x{height} differs from {ref_width}x{ref_height} "
                        f"of {reference[0]}"
                    )
                elif mode != reference[2]:
                    raise DatasetError(f"{file}: mode {mode} differs from {reference[2]} of {reference[0]}")
                images.append(pixels if pixels.ndim == 3 else pixels[..., np.newaxis])
                labels.append(class_names.index(class_folder.name))
        if not images:
            raise DatasetError(f"{path / split}: no images")
        arrays.append((np.stack(images), np.asarray(labels, dtype=np.int64)))
    (x_train, y_train), (x_test, y_test) = arrays
    return ImageDataset(path.name, x_train, y_train, x_test, y_test, class_names)


# ---------------------------------------------------------------- scikit-learn digits


def _load_digits() -> ImageDataset:
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
    "ImageDataset",
    "describe",
    "load_dataset",
    "stratified_subset",
    "to_tensor",
]
