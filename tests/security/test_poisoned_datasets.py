"""Poisoned dataset files: each attack is reproduced and must end quickly, as a DatasetError from the
reader (aqpl.datasets) and as a 422 naming the problem from the API, before much is read or held.
"""

from __future__ import annotations

import gzip
import io
import pickle  # noqa: TID251 -- writes the hostile CIFAR-10 batches under test
import re
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from aqpl.datasets import DatasetError, DatasetLimits, inspect_dataset, load_dataset
from aqpl.datasets.cifar10 import PICKLE_MAX_OPERATIONS
from backend.models import Project, Role
from backend.storage import uploads_root
from tests.api.factories import Api, make_user, running_api
from tests.conftest import DatabaseFactory

QUICKLY = 2.0  # seconds: every refusal here comes from a header, a counter or a cap, never a full read
MAX_BODY = 64 * 1024  # the test API's AQPL_MAX_UPLOAD_BYTES
MAX_DATASET = 1024 * 1024  # the test API's AQPL_MAX_DATASET_BYTES
MIB = 1024 * 1024


def refused(call: Callable[[], object]) -> tuple[str, float]:
    """The DatasetError's message and the seconds it took to come."""
    start = time.perf_counter()
    with pytest.raises(DatasetError) as error:
        call()
    return str(error.value), time.perf_counter() - start


# ---------------------------------------------------------------- CIFAR-10 pickles


def shared_deep(levels: int) -> list[Any]:
    """[[...], [...]] `levels` deep where both items are one list: 2**levels paths to its bottom."""
    node: list[Any] = []
    for _ in range(levels):
        node = [node, node]
    return node


def shared_wide(levels: int, width: int = 100) -> list[Any]:
    """`levels` lists of `width` references to the one below: width**levels paths, a few KB pickled."""
    node: list[Any] = []
    for _ in range(levels):
        node = [node] * width
    return node


def cifar_folder(folder: Path, **overrides: object) -> Path:
    """A valid tiny cifar-10-batches-py folder (2 images a batch); `overrides` replaces whole files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    contents: dict[str, object] = {
        "batches.meta": {"label_names": [f"class{index}".encode() for index in range(10)]},
    }
    for name in (*(f"data_batch_{number}" for number in range(1, 6)), "test_batch"):
        contents[name] = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]}
    contents.update(overrides)
    for name, content in contents.items():
        data = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
        (folder / name).write_bytes(data)
    return folder


def test_a_few_hundred_bytes_of_deeply_shared_lists_are_refused_at_once(tmp_path: Path) -> None:
    """Before: the conversion walked every path (1.2 KB took 14 s; each level doubled it, for ever)."""
    payload = pickle.dumps({"label_names": shared_deep(60)}, protocol=2)
    assert len(payload) < 500
    folder = cifar_folder(tmp_path / "deep", **{"batches.meta": payload})
    for read in (load_dataset, inspect_dataset):
        message, seconds = refused(lambda read=read: read("cifar10", folder))  # type: ignore[misc]
        assert message == "batches.meta: unreadable CIFAR-10 pickle: objects nested deeper than 16 levels"
        assert seconds < QUICKLY


def test_wide_shared_lists_are_converted_once_per_object(tmp_path: Path) -> None:
    """100**8 paths but 8 lists: within the depth cap, the conversion must still be linear."""
    bomb = shared_wide(8)
    assert len(pickle.dumps(bomb, protocol=2)) < 2000
    meta = tmp_path / "meta"
    cifar_folder(meta, **{"batches.meta": {"label_names": bomb}})
    message, seconds = refused(lambda: load_dataset("cifar10", meta))
    assert message == "batches.meta: 'label_names' must be a list of strings"  # never str() of the bomb
    assert seconds < QUICKLY
    # The same bomb in a key the loader ignores: converted once, the dataset is fine.
    ignored = tmp_path / "ignored"
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "filenames": bomb}
    cifar_folder(ignored, data_batch_1=batch)
    start = time.perf_counter()
    assert load_dataset("cifar10", ignored).x_train.shape == (10, 32, 32, 3)
    assert inspect_dataset("cifar10", ignored).num_train == 10
    assert time.perf_counter() - start < QUICKLY


def test_a_pickle_of_too_many_operations_is_refused_before_it_builds_them(tmp_path: Path) -> None:
    many = pickle.dumps({"label_names": [b"x"], "padding": [[] for _ in range(PICKLE_MAX_OPERATIONS)]})
    folder = cifar_folder(tmp_path / "many", **{"batches.meta": many})
    message, seconds = refused(lambda: inspect_dataset("cifar10", folder))
    assert message.startswith(f"batches.meta: unreadable CIFAR-10 pickle: more than {PICKLE_MAX_OPERATIONS}")
    assert seconds < QUICKLY


def test_a_length_field_larger_than_the_file_is_truncation_not_an_allocation(tmp_path: Path) -> None:
    # Protocol 4's BINBYTES8 with a 1 TiB length: read from a file, pickle asks for 1 TiB at once.
    huge = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc"
    folder = cifar_folder(tmp_path / "huge", test_batch=huge)
    message, seconds = refused(lambda: load_dataset("cifar10", folder))
    assert message == "test_batch: truncated: the pickle ends early"
    assert seconds < QUICKLY


# ---------------------------------------------------------------- idx headers


def idx_file(path: Path, shape: tuple[int, ...], data: bytes = b"", *, gz: bool = False) -> None:
    content = struct.pack(">I", 0x0800 + len(shape)) + struct.pack(f">{len(shape)}I", *shape) + data
    path.write_bytes(gzip.compress(content) if gz else content)


def overflowing_mnist(folder: Path) -> Path:
    """Headers of (4096, 2**26, 2**26) images: 2**64 bytes, which np.prod(int64) wraps to 0."""
    folder.mkdir(parents=True)
    for split in ("train", "t10k"):
        idx_file(folder / f"{split}-images-idx3-ubyte", (4096, 1 << 26, 1 << 26))
        idx_file(folder / f"{split}-labels-idx1-ubyte", (4096,), bytes(4096))
    return folder


def test_an_idx_header_whose_size_overflows_int64_is_refused(tmp_path: Path) -> None:
    assert int(np.prod((4096, 1 << 26, 1 << 26), dtype=np.int64)) == 0  # what the old check computed
    folder = overflowing_mnist(tmp_path / "mnist")
    for read in (load_dataset, inspect_dataset):
        message, seconds = refused(lambda read=read: read("mnist", folder))  # type: ignore[misc]
        assert message == (
            "train-images-idx3-ubyte: header declares 18446744073709551616 pixel bytes, "
            "more than the 2147483648 allowed"
        )
        assert seconds < QUICKLY


def test_every_declared_dimension_is_capped_before_the_product(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    idx_file(folder / "train-images-idx3-ubyte", (0, 0xFFFFFFFF, 0xFFFFFFFF))  # 0 bytes, absurd sides
    message, _ = refused(lambda: inspect_dataset("mnist", folder))
    assert "dimension 4294967295 alone is more than the 2147483648 bytes allowed" in message


# ---------------------------------------------------------------- gzip and deflate bombs


def gzip_of_zeros(header: bytes, zeros: int) -> bytes:
    """A gzip stream of `header` then `zeros` zero bytes, written in pieces (never all in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    pieces = [compressor.compress(header)]
    for start in range(0, zeros, MIB):
        pieces.append(compressor.compress(bytes(min(MIB, zeros - start))))
    pieces.append(compressor.flush())
    return b"".join(pieces)


def bomb_mnist(folder: Path, count: int) -> Path:
    """A valid MNIST folder whose gzip files unpack to `count` labels and `count` 1x1 images."""
    folder.mkdir(parents=True)
    labels = gzip_of_zeros(struct.pack(">II", 0x0801, count), count)
    images = gzip_of_zeros(struct.pack(">IIII", 0x0803, count, 1, 1), count)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(labels)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    idx_file(folder / "t10k-labels-idx1-ubyte", (1,), bytes(1))
    idx_file(folder / "t10k-images-idx3-ubyte", (1, 1, 1), bytes(1))
    return folder


def peak_traced_bytes(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_over_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    folder = bomb_mnist(tmp_path / "bomb", 64 * MIB)  # 128 MiB unpacked from about 130 KB
    assert sum(file.stat().st_size for file in folder.iterdir()) < 300_000
    limits = DatasetLimits(MAX_DATASET, "AQPL_MAX_DATASET_BYTES")
    message, seconds = refused(lambda: inspect_dataset("mnist", folder, limits=limits))
    assert message == (
        "train-images-idx3-ubyte.gz: header declares 67108864 pixel bytes, "
        "more than the 1048576 allowed (AQPL_MAX_DATASET_BYTES)"
    )
    assert seconds < QUICKLY


def test_a_gzip_stream_longer_than_its_header_stops_after_one_extra_byte(tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    idx_file(folder / "train-images-idx3-ubyte", (6, 1, 1), bytes(6))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip_of_zeros(struct.pack(">II", 0x0801, 6), 256 * MIB)
    )
    idx_file(folder / "t10k-images-idx3-ubyte", (1, 1, 1), bytes(1))
    idx_file(folder / "t10k-labels-idx1-ubyte", (1,), bytes(1))
    for read in (load_dataset, inspect_dataset):
        tracemalloc.start()
        try:
            message, seconds = refused(lambda read=read: read("mnist", folder))  # type: ignore[misc]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert message == (
            "train-labels-idx1-ubyte.gz: unexpected data after the 6 label bytes the header declares"
        )
        assert seconds < QUICKLY and peak < 4 * MIB  # 256 MiB were there to unpack


def test_inspection_holds_one_chunk_of_a_large_valid_dataset(tmp_path: Path) -> None:
    """What the API reads it streams: a dataset of 64 MiB is checked a chunk (1 MiB) at a time."""
    folder = bomb_mnist(tmp_path / "big", 32 * MIB)
    info = inspect_dataset("mnist", folder)
    assert (info.num_train, info.bytes) == (32 * MIB, 64 * MIB + 2)
    assert peak_traced_bytes(lambda: inspect_dataset("mnist", folder)) < 8 * MIB


def deflate_bomb_npz(zeros: int) -> bytes:
    """A valid .npz whose x_train is `zeros` zero pixels: a few KB that savez_compressed unpacks large."""
    buffer = io.BytesIO()
    count = zeros // 64
    np.savez_compressed(
        buffer,
        x_train=np.zeros((count, 8, 8), np.uint8),
        y_train=np.zeros(count, np.uint8),
        x_test=np.zeros((1, 8, 8), np.uint8),
        y_test=np.zeros(1, np.uint8),
    )
    return buffer.getvalue()


def test_an_npz_deflate_bomb_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    (tmp_path / "bomb.npz").write_bytes(deflate_bomb_npz(64 * MIB))
    limits = DatasetLimits(MAX_DATASET, "AQPL_MAX_DATASET_BYTES")
    message, seconds = refused(lambda: inspect_dataset("npz", tmp_path / "bomb.npz", limits=limits))
    assert re.fullmatch(
        r"bomb\.npz: unpacks to \d+ bytes, more than the 1048576 allowed \(AQPL_MAX_DATASET_BYTES\)", message
    )
    assert seconds < QUICKLY


# ---------------------------------------------------------------- the same attacks through the API


@pytest.fixture
def api(database_factory: DatabaseFactory, database_kind: str, tmp_path: Path) -> Iterator[Api]:
    with running_api(
        database_factory.create(database_kind),
        tmp_path / "data",
        max_upload_bytes=MAX_BODY,
        max_dataset_bytes=MAX_DATASET,
    ) as api:
        yield api


def import_root(api: Api) -> Path:
    assert api.settings.import_root is not None
    api.settings.import_root.mkdir(parents=True, exist_ok=True)
    return api.settings.import_root


def lead_headers(api: Api) -> dict[str, str]:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    return api.headers_for(lead)


def project_count(api: Api) -> int:
    with api.seed() as session:
        return int(session.scalar(select(func.count(Project.id))) or 0)


def create(api: Api, headers: dict[str, str], dataset: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    response = api.client.post(
        "/api/v1/projects", json={"name": "poisoned", "dataset": dataset, "epochs": 1}, headers=headers
    )
    return response, time.perf_counter() - start


@pytest.mark.parametrize(
    ("build", "dataset_format", "pattern"),
    [
        (
            lambda root: cifar_folder(
                root / "deep", **{"batches.meta": pickle.dumps({"label_names": shared_deep(60)})}
            ),
            "cifar10",
            r"^batches\.meta: unreadable CIFAR-10 pickle: objects nested deeper than 16 levels$",
        ),
        (
            lambda root: overflowing_mnist(root / "overflow"),
            "mnist",
            r"^train-images-idx3-ubyte: header declares 18446744073709551616 pixel bytes, more than the "
            r"1048576 allowed \(AQPL_MAX_DATASET_BYTES\)$",
        ),
        (
            lambda root: bomb_mnist(root / "gzip", 16 * MIB),
            "mnist",
            r"^train-images-idx3-ubyte\.gz: header declares 16777216 pixel bytes, more than the 1048576 "
            r"allowed \(AQPL_MAX_DATASET_BYTES\)$",
        ),
    ],
    ids=["shared-reference pickle", "int64 overflow", "gzip bomb"],
)
def test_the_api_refuses_each_poisoned_path_quickly(
    api: Api, build: Callable[[Path], Path], dataset_format: str, pattern: str
) -> None:
    headers = lead_headers(api)
    path = build(import_root(api))
    before = project_count(api)
    response, seconds = create(api, headers, {"format": dataset_format, "path": str(path)})
    assert response.status_code == 422, response.text
    assert re.search(pattern, response.json()["detail"]), response.json()["detail"]
    assert seconds < QUICKLY
    assert project_count(api) == before


def test_the_api_refuses_an_npz_upload_that_unpacks_past_the_upload_limit(api: Api) -> None:
    headers = lead_headers(api)
    response, _ = create(api, headers, {"format": "npz"})
    project_id = response.json()["id"]
    content = deflate_bomb_npz(8 * MIB)
    assert len(content) < MAX_BODY  # the body is small: only the unpacked size is hostile
    start = time.perf_counter()
    response = api.client.post(
        f"/api/v1/projects/{project_id}/dataset",
        files={"file": ("data.npz", content, "application/octet-stream")},
        headers=headers,
    )
    assert response.status_code == 422, response.text
    assert re.fullmatch(
        r"upload\.npz: unpacks to \d+ bytes, more than the 65536 allowed \(AQPL_MAX_UPLOAD_BYTES\)",
        response.json()["detail"],
    ), response.json()["detail"]
    assert time.perf_counter() - start < QUICKLY
    assert not list(uploads_root(api.settings).rglob("*.npz"))
