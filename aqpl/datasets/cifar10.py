"""CIFAR-10's python batches: pickles read by an unpickler that imports and runs nothing.

Three bounds make a hostile pickle end quickly, as a `DatasetError`: the file's size is claimed
against the limits before it is read; its opcodes are walked before anything is unpickled (at most
PICKLE_MAX_OPERATIONS of them, each able to make one object, and every length field within the
file, so none can make the unpickler allocate what the file does not hold); and the conversion of
what it built visits each object once (shared references are converted once, not once per path
that reaches them) and no deeper than PICKLE_MAX_DEPTH. Without the last, a few hundred bytes of
lists that share their items expand exponentially.
"""

from __future__ import annotations

import io
import math
import pickle  # noqa: TID251 -- CIFAR-10 ships as pickles; _RestrictedUnpickler refuses every global
import pickletools
import struct
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from aqpl.datasets.base import Budget, DatasetError, DatasetInfo, Guard, ImageDataset, LabelScan

CIFAR_FOLDER_NAME = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_IMAGE_SIDE = 32
PIXELS_PER_IMAGE = 3 * CIFAR_IMAGE_SIDE * CIFAR_IMAGE_SIDE
# A real batch is 30,000 to 90,000 opcodes (10,000 labels and file names, one array); each opcode
# can make one Python object, so this bounds the objects (and memory) a pickle can make: without
# it, 2 bytes per empty list would make a file 30 times its size in memory.
PICKLE_MAX_OPERATIONS = 250_000
# A batch is a dict of lists and arrays (3 levels); deeper nesting is not CIFAR-10.
PICKLE_MAX_DEPTH = 16


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
        if not isinstance(shape, tuple | list) or not all(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
        ):
            raise pickle.UnpicklingError("an ndarray shape must be non-negative integers")
        self.shape, self.dtype, self.fortran_order, self.raw = tuple(shape), dtype, bool(fortran_order), raw

    def to_array(self) -> npt.NDArray[Any]:
        if not isinstance(self.dtype, _DtypeStub) or not isinstance(self.raw, bytes | bytearray | str):
            raise pickle.UnpicklingError("incomplete ndarray")
        dtype = self.dtype.to_dtype()
        raw = self.raw.encode("latin1") if isinstance(self.raw, str) else bytes(self.raw)
        flat = np.frombuffer(raw, dtype=dtype)
        if flat.size != math.prod(self.shape):  # Python integers: a huge shape cannot wrap to 0
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


def _scan(data: bytes, name: str) -> None:
    """Walk the pickle's opcodes before a single object is made: at most PICKLE_MAX_OPERATIONS of
    them, every length field within the file (read from memory, a length can never ask for more)."""
    stream = io.BytesIO(data)
    try:
        for operations, _ in enumerate(pickletools.genops(stream), start=1):
            if operations > PICKLE_MAX_OPERATIONS:
                raise DatasetError(
                    f"{name}: unreadable CIFAR-10 pickle: more than {PICKLE_MAX_OPERATIONS} pickle "
                    "operations (a CIFAR-10 batch has under 100,000)"
                )
    except DatasetError:
        raise
    except Exception as error:  # genops says ValueError for a bad opcode, a short argument, no STOP
        if stream.tell() >= len(data):
            raise DatasetError(f"{name}: truncated: the pickle ends early") from error
        raise DatasetError(f"{name}: corrupt CIFAR-10 pickle: {error}") from error


def _plain(value: Any, converted: dict[int, Any], depth: int = 0) -> Any:
    """Stubs -> numpy arrays, bytes dictionary keys -> str (Python 2 pickles read with encoding="bytes").

    `converted` maps id(object) -> its conversion, so an object shared by many containers is converted
    once: the work is linear in the objects the pickle made, not in the paths that reach them.
    """
    if depth > PICKLE_MAX_DEPTH:
        raise pickle.UnpicklingError(f"objects nested deeper than {PICKLE_MAX_DEPTH} levels")
    if id(value) in converted:
        return converted[id(value)]
    result: Any
    if isinstance(value, _ArrayStub):
        result = value.to_array()
    elif isinstance(value, dict):
        result = {
            (key.decode("latin1") if isinstance(key, bytes) else key): _plain(item, converted, depth + 1)
            for key, item in value.items()
        }
    elif isinstance(value, list | tuple):
        result = [_plain(item, converted, depth + 1) for item in value]
    elif isinstance(value, _DtypeStub) or value is _NDARRAY_CLASS:
        raise pickle.UnpicklingError("dangling numpy type object")
    else:
        return value
    converted[id(value)] = result
    return result


def _read_pickle(path: Path) -> dict[str, Any]:
    data = path.read_bytes()  # its size was claimed against the limits before
    _scan(data, path.name)
    try:
        loaded = _plain(_RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load(), {})
    except pickle.UnpicklingError as error:
        raise DatasetError(f"{path.name}: unreadable CIFAR-10 pickle: {error}") from error
    except EOFError as error:
        raise DatasetError(f"{path.name}: truncated: the pickle ends early") from error
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as error:
        raise DatasetError(f"{path.name}: corrupt CIFAR-10 pickle: {error}") from error
    if not isinstance(loaded, dict):
        raise DatasetError(f"{path.name}: expected a pickled dictionary, found {type(loaded).__name__}")
    return loaded


def _batch(path: Path, num_classes: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    batch = _read_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(f"{path.name}: missing key {key!r}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path.name}: 'data' must be a uint8 array of shape (N, {PIXELS_PER_IMAGE})")
    if data.shape[1] != PIXELS_PER_IMAGE:
        raise DatasetError(
            f"{path.name}: 'data' rows have {data.shape[1]} values, expected {PIXELS_PER_IMAGE} (3x32x32)"
        )
    raw_labels = batch["labels"]
    if not isinstance(raw_labels, list) or not all(
        isinstance(label, int) and not isinstance(label, bool) for label in raw_labels
    ):
        raise DatasetError(f"{path.name}: 'labels' must be a list of integers")
    labels = np.asarray(raw_labels, dtype=np.int64)
    if len(labels) != len(data):
        raise DatasetError(f"{path.name}: {len(labels)} labels but {len(data)} images")
    scan = LabelScan(num_classes)
    scan.add(labels)
    scan.check_range(path.name)
    return data, labels


def _class_names(meta: dict[str, Any]) -> tuple[str, ...]:
    label_names = meta.get("label_names")
    if not isinstance(label_names, list) or not label_names:
        raise DatasetError(f"{CIFAR_META}: missing or empty 'label_names' list")
    if not all(isinstance(name, bytes | str) for name in label_names):
        raise DatasetError(f"{CIFAR_META}: 'label_names' must be a list of strings")
    try:
        return tuple(name.decode("utf-8") if isinstance(name, bytes) else name for name in label_names)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{CIFAR_META}: a label name is not UTF-8: {error}") from error


def read(path: Path, budget: Budget, *, keep: bool, guard: Guard) -> tuple[DatasetInfo, ImageDataset | None]:
    """Every file is found and its size claimed first; then the batches are read one at a time."""
    folder = path / CIFAR_FOLDER_NAME if (path / CIFAR_FOLDER_NAME).is_dir() else path
    if not folder.is_dir():
        raise DatasetError(f"{path}: expected the {CIFAR_FOLDER_NAME} folder, got a file")
    files = [folder / name for name in (CIFAR_META, *CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)]
    for file in files:
        guard(file)
        if not file.is_file():
            raise DatasetError(f"{file}: missing file")
        size = file.stat().st_size
        budget.claim(size, f"{file.name}: {size} bytes")
    class_names = _class_names(_read_pickle(files[0]))
    train: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    counts: list[int] = []
    for file in files[1:]:
        data, labels = _batch(file, len(class_names))
        counts.append(len(labels))
        if keep:
            # Rows are channel-major (1024 red, 1024 green, 1024 blue values, each row-major).
            images = data.reshape(-1, 3, CIFAR_IMAGE_SIDE, CIFAR_IMAGE_SIDE).transpose(0, 2, 3, 1)
            train.append((np.ascontiguousarray(images), labels))
    shape = (CIFAR_IMAGE_SIDE, CIFAR_IMAGE_SIDE, 3)
    info = DatasetInfo("cifar10", sum(counts[:-1]), counts[-1], shape, class_names, budget.used)
    if not keep:
        return info, None
    (x_test, y_test) = train.pop()
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return info, ImageDataset("cifar10", x_train, y_train, x_test, y_test, class_names)
