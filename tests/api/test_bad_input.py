"""Hostile input: dataset paths, archives and files that must be refused with a 4xx naming the problem,
leaving no project row and no files behind; and API requests that must get a 4xx, never a 5xx.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from backend.models import Example, Project, Role
from backend.storage import uploads_root
from tests.api.factories import Api, make_annotating_round, make_user, running_api

# Small on purpose: bodies and unpacked archives larger than this are refused (AQPL_MAX_UPLOAD_BYTES).
MAX_BODY = 64 * 1024
MNIST_TRAIN_IMAGES = "train-images-idx3-ubyte"
MNIST_TRAIN_LABELS = "train-labels-idx1-ubyte"
MNIST_TEST_IMAGES = "t10k-images-idx3-ubyte"
MNIST_TEST_LABELS = "t10k-labels-idx1-ubyte"


@pytest.fixture
def api(api_database: str, tmp_path: Path) -> Iterator[Api]:
    """A fresh data dir (storage, import root) per test on the module's database (tests compare counts
    before and after, never absolutes)."""
    with running_api(api_database, tmp_path / "data", max_upload_bytes=MAX_BODY) as api:
        yield api


@pytest.fixture
def lead_headers(api: Api) -> dict[str, str]:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    return api.headers_for(lead)


def import_root(api: Api) -> Path:
    root = api.settings.import_root
    assert root is not None
    root.mkdir(parents=True, exist_ok=True)
    return root


def project_count(api: Api) -> int:
    with api.seed() as session:
        return int(session.scalar(select(func.count(Project.id))) or 0)


def example_count(api: Api) -> int:
    with api.seed() as session:
        return int(session.scalar(select(func.count(Example.id))) or 0)


def stored_files(api: Api) -> list[Path]:
    """Every file the platform wrote for projects: arrays, checkpoints and unpacked uploads."""
    roots = [api.settings.storage_dir / "projects", uploads_root(api.settings)]
    return sorted(path for root in roots if root.exists() for path in root.rglob("*") if path.is_file())


def detail(response: Any) -> str:
    body = response.json()
    assert isinstance(body["detail"], str), body
    return str(body["detail"])


# ---------------------------------------------------------------- hostile dataset files


def write_idx(path: Path, array: np.ndarray, *, declared_shape: tuple[int, ...] | None = None) -> None:
    """An unsigned-byte idx file; `declared_shape` lets the header lie about the data that follows."""
    shape = declared_shape or array.shape
    header = struct.pack(">I", 0x0800 + len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def mnist_folder(folder: Path, *, train: int = 6, test: int = 4, side: int = 8) -> Path:
    """A valid tiny MNIST raw folder (uncompressed idx files)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for images_name, labels_name, count in (
        (MNIST_TRAIN_IMAGES, MNIST_TRAIN_LABELS, train),
        (MNIST_TEST_IMAGES, MNIST_TEST_LABELS, test),
    ):
        write_idx(folder / images_name, rng.integers(0, 256, (count, side, side), dtype=np.uint8))
        write_idx(folder / labels_name, np.arange(count, dtype=np.uint8) % 10)
    return folder


def npz_bytes(**overrides: np.ndarray) -> bytes:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8),
        "y_test": np.array([0, 1, 2]),
        "class_names": np.array(["cat", "dog", "bird"]),
        **overrides,
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays vs allow_pickle
    return buffer.getvalue()


def png_bytes(width: int = 8, height: int = 8, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color=128 if mode == "L" else (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(side: int = 100_000) -> bytes:
    """A 200-byte PNG whose header declares side x side grey pixels (10^10: far over Pillow's limit)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def image_tree(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    """An imagefolder dataset (train/ and test/ class folders of 8x8 PNGs), plus or overriding `files`."""
    layout = {
        "train/cat/0.png": png_bytes(),
        "train/cat/1.png": png_bytes(),
        "train/dog/0.png": png_bytes(),
        "train/dog/1.png": png_bytes(),
        "test/cat/0.png": png_bytes(),
        "test/dog/0.png": png_bytes(),
        **(files or {}),
    }
    for name, content in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def zip_bytes(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    return buffer.getvalue()


def _truncated_idx(root: Path) -> tuple[str, str]:
    folder = mnist_folder(root / "mnist_truncated")
    images = np.zeros((6, 8, 8), dtype=np.uint8)
    write_idx(folder / MNIST_TRAIN_IMAGES, images[:2], declared_shape=(6, 8, 8))  # 128 of 384 pixel bytes
    return "mnist", str(folder)


def _truncated_gzip_idx(root: Path) -> tuple[str, str]:
    folder = mnist_folder(root / "mnist_truncated_gz")
    (folder / MNIST_TRAIN_IMAGES).unlink()
    whole = gzip.compress(struct.pack(">IIII", 0x0803, 6, 8, 8) + bytes(6 * 64))
    (folder / f"{MNIST_TRAIN_IMAGES}.gz").write_bytes(whole[: len(whole) // 2])
    return "mnist", str(folder)


def _idx_label_count(root: Path) -> tuple[str, str]:
    folder = mnist_folder(root / "mnist_counts")
    write_idx(folder / MNIST_TRAIN_LABELS, np.arange(5, dtype=np.uint8))  # 5 labels for 6 images
    return "mnist", str(folder)


def _idx_label_range(root: Path) -> tuple[str, str]:
    folder = mnist_folder(root / "mnist_range")
    write_idx(folder / MNIST_TRAIN_LABELS, np.array([0, 1, 2, 3, 4, 12], dtype=np.uint8))  # digits are 0..9
    return "mnist", str(folder)


def _truncated_npz(root: Path) -> tuple[str, str]:
    whole = npz_bytes()
    (root / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    return "npz", str(root / "truncated.npz")


def _npz_label_count(root: Path) -> tuple[str, str]:
    (root / "counts.npz").write_bytes(npz_bytes(y_train=np.array([0, 1, 2])))  # 3 labels for 6 images
    return "npz", str(root / "counts.npz")


def _npz_label_range(root: Path) -> tuple[str, str]:
    (root / "range.npz").write_bytes(npz_bytes(y_test=np.array([0, 1, 7])))  # 3 class names
    return "npz", str(root / "range.npz")


def _npz_negative_label(root: Path) -> tuple[str, str]:
    (root / "negative.npz").write_bytes(npz_bytes(y_train=np.array([0, 1, 2, 0, -1, 2])))
    return "npz", str(root / "negative.npz")


def _npz_pickled(root: Path) -> tuple[str, str]:
    objects = np.empty(6, dtype=object)
    objects[:] = [0, 1, 2, 0, 1, 2]
    buffer = io.BytesIO()
    arrays = {"x_train": np.zeros((6, 8, 8), np.uint8), "x_test": np.zeros((2, 8, 8), np.uint8)}
    np.savez(buffer, **arrays, y_train=objects, y_test=np.array([0, 1]))  # type: ignore[arg-type]
    (root / "pickled.npz").write_bytes(buffer.getvalue())
    return "npz", str(root / "pickled.npz")


def _npz_mixed_sizes(root: Path) -> tuple[str, str]:
    (root / "sizes.npz").write_bytes(npz_bytes(x_test=np.zeros((3, 9, 9, 3), np.uint8)))
    return "npz", str(root / "sizes.npz")


def _not_an_npz(root: Path) -> tuple[str, str]:
    (root / "text.npz").write_text("these are not arrays\n")
    return "npz", str(root / "text.npz")


def _mixed_image_sizes(root: Path) -> tuple[str, str]:
    return "imagefolder", str(image_tree(root / "sizes", {"train/dog/1.png": png_bytes(9, 9)}))


def _non_image_file(root: Path) -> tuple[str, str]:
    return "imagefolder", str(image_tree(root / "text", {"train/cat/notes.txt": b"hello"}))


def _image_with_garbage(root: Path) -> tuple[str, str]:
    return "imagefolder", str(image_tree(root / "garbage", {"train/cat/1.png": b"not a png at all"}))


def _decompression_bomb(root: Path) -> tuple[str, str]:
    return "imagefolder", str(image_tree(root / "bomb", {"train/dog/1.png": decompression_bomb_png()}))


def _symlink_inside_tree(root: Path) -> tuple[str, str]:
    outside = root.parent / "outside.png"
    outside.write_bytes(png_bytes())
    folder = image_tree(root / "linked")
    (folder / "train/cat/2.png").symlink_to(outside)
    return "imagefolder", str(folder)


DatasetCase = Callable[[Path], tuple[str, str]]
HOSTILE_DATASETS: dict[str, tuple[DatasetCase, str]] = {
    # case: (builder, a regular expression the 4xx message must match)
    "truncated idx": (_truncated_idx, rf"{MNIST_TRAIN_IMAGES}.*truncated"),
    "truncated gzip idx": (_truncated_gzip_idx, rf"{MNIST_TRAIN_IMAGES}\.gz.*(truncated|corrupt)"),
    "idx label count": (_idx_label_count, rf"{MNIST_TRAIN_LABELS}.*5 labels.*6 images"),
    "idx label out of range": (_idx_label_range, rf"{MNIST_TRAIN_LABELS}.*label 12.*outside 0\.\.9"),
    "truncated npz": (_truncated_npz, r"truncated\.npz.*(truncated|corrupt|not a readable)"),
    "npz label count": (_npz_label_count, r"counts\.npz.*3 labels.*6 images"),
    "npz label out of range": (_npz_label_range, r"range\.npz.*label 7.*outside 0\.\.2"),
    "npz negative label": (_npz_negative_label, r"negative\.npz.*-1.*negative"),
    "npz pickled objects": (_npz_pickled, r"pickled\.npz.*(pickle|object)"),
    "npz mixed sizes": (_npz_mixed_sizes, r"sizes\.npz.*\(8, 8, 3\).*\(9, 9, 3\)"),
    "not an npz": (_not_an_npz, r"text\.npz.*not a readable"),
    "mixed image sizes": (_mixed_image_sizes, r"1\.png.*size 9x9 differs from 8x8"),
    "non-image file": (_non_image_file, r"notes\.txt.*not an image"),
    "garbage image": (_image_with_garbage, r"1\.png.*unreadable image"),
    "decompression bomb": (_decompression_bomb, r"1\.png.*decompression"),
    "symlink out of the root": (_symlink_inside_tree, r"2\.png.*outside the import root"),
}


def create_project(api: Api, headers: dict[str, str], dataset: dict[str, Any]) -> Any:
    return api.client.post(
        "/api/v1/projects", json={"name": "hostile", "dataset": dataset, "epochs": 1}, headers=headers
    )


def assert_refused_without_trace(api: Api, response: Any, pattern: str, before: tuple[int, int]) -> None:
    """4xx naming the problem; the project and example counts are still `before`; no file was written."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert re.search(pattern, detail(response), flags=re.IGNORECASE | re.DOTALL), detail(response)
    assert (project_count(api), example_count(api)) == before
    assert stored_files(api) == []


@pytest.mark.parametrize("case", sorted(HOSTILE_DATASETS))
def test_a_hostile_dataset_is_refused_and_leaves_no_project(
    api: Api, lead_headers: dict[str, str], case: str
) -> None:
    build, pattern = HOSTILE_DATASETS[case]
    dataset_format, path = build(import_root(api))
    before = project_count(api), example_count(api)
    response = create_project(api, lead_headers, {"format": dataset_format, "path": path})
    assert_refused_without_trace(api, response, pattern, before)


def test_a_valid_dataset_of_each_kind_is_accepted(api: Api, lead_headers: dict[str, str]) -> None:
    """The refusals above are not a checker that refuses everything."""
    root = import_root(api)
    (root / "good.npz").write_bytes(npz_bytes())
    datasets = [
        {"format": "mnist", "path": str(mnist_folder(root / "mnist_good"))},
        {"format": "npz", "path": "good.npz"},  # relative to the import root
        {"format": "imagefolder", "path": str(image_tree(root / "images_good"))},
    ]
    for dataset in datasets:
        response = create_project(api, lead_headers, dataset)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "importing"


@pytest.mark.parametrize(
    ("make_path", "pattern"),
    [
        (lambda root: "/etc", r"outside the import root"),
        (lambda root: "../../../../etc/passwd", r"outside the import root"),
        (lambda root: str(root / ".." / "elsewhere"), r"outside the import root"),
        (lambda root: str(root / "missing.npz"), r"does not exist"),
    ],
    ids=["absolute outside", "dot-dot", "dot-dot inside an absolute path", "missing"],
)
def test_a_path_outside_the_import_root_is_refused(
    api: Api, lead_headers: dict[str, str], make_path: Callable[[Path], str], pattern: str
) -> None:
    root = import_root(api)
    (root.parent / "elsewhere").mkdir(exist_ok=True)
    before = project_count(api), example_count(api)
    response = create_project(api, lead_headers, {"format": "npz", "path": make_path(root)})
    assert_refused_without_trace(api, response, pattern, before)


def test_a_symlink_pointing_out_of_the_import_root_is_refused(api: Api, lead_headers: dict[str, str]) -> None:
    root = import_root(api)
    secret = root.parent / "secret.npz"
    secret.write_bytes(npz_bytes())
    (root / "innocent.npz").symlink_to(secret)
    (root / "innocent_folder").symlink_to(root.parent, target_is_directory=True)
    before = project_count(api), example_count(api)
    for path in ("innocent.npz", str(root / "innocent_folder" / "secret.npz")):
        response = create_project(api, lead_headers, {"format": "npz", "path": path})
        assert_refused_without_trace(api, response, r"outside the import root", before)


# ---------------------------------------------------------------- where a 422 points

PATH_PROBLEMS: dict[str, DatasetCase] = {
    # One of each place that refuses a dataset path: storage's checks of the path, the dataset
    # reader, its guard against links, and the service's check of the format.
    "outside the import root": lambda root: ("npz", "/etc"),
    "missing": lambda root: ("npz", "missing.npz"),
    "not a path": lambda root: ("npz", "\x00"),
    "unreadable file": _not_an_npz,
    "link out of the import root": _symlink_inside_tree,
    "a format without files": lambda root: ("digits", "digits"),
}


@pytest.mark.parametrize("case", sorted(PATH_PROBLEMS))
def test_a_dataset_path_problem_is_a_422_that_points_at_the_path(
    api: Api, lead_headers: dict[str, str], case: str
) -> None:
    """The service's errors name their field as pydantic's do: the form shows them next to the path."""
    dataset_format, path = PATH_PROBLEMS[case](import_root(api))
    response = create_project(api, lead_headers, {"format": dataset_format, "path": path})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"loc": ["body", "dataset", "path"], "msg": detail(response)}]


def test_a_bad_body_field_is_a_422_that_points_at_the_field(api: Api, lead_headers: dict[str, str]) -> None:
    body = {"name": "x", "dataset": {"format": "digits", "train_limit": 0}, "budget": 10_001}
    response = api.client.post("/api/v1/projects", json=body, headers=lead_headers)
    assert response.status_code == 422, response.text
    payload = response.json()
    errors = {tuple(item["loc"]): item["msg"] for item in payload["errors"]}
    assert errors.keys() == {("body", "budget"), ("body", "dataset", "train_limit")}, payload
    assert "less than or equal to 10000" in errors[("body", "budget")]
    assert "greater than or equal to 1" in errors[("body", "dataset", "train_limit")]
    # `detail` keeps FastAPI's shape: the same problems with their type, input and context.
    assert [(item["loc"], item["msg"]) for item in payload["detail"]] == [
        (item["loc"], item["msg"]) for item in payload["errors"]
    ]


# ---------------------------------------------------------------- uploads


def awaiting_upload(api: Api, headers: dict[str, str], dataset_format: str) -> int:
    response = create_project(api, headers, {"format": dataset_format})
    assert response.status_code == 201, response.text
    assert response.json()["progress"]["step"] == "awaiting_upload"
    return int(response.json()["id"])


def upload(api: Api, headers: dict[str, str], project_id: int, name: str, content: bytes) -> Any:
    return api.client.post(
        f"/api/v1/projects/{project_id}/dataset",
        files={"file": (name, content, "application/octet-stream")},
        headers=headers,
    )


def assert_upload_refused(api: Api, project_id: int, response: Any, pattern: str) -> None:
    """4xx naming the problem; no file kept; the project still waits for a (good) upload."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert re.search(pattern, detail(response), flags=re.IGNORECASE | re.DOTALL), detail(response)
    assert stored_files(api) == []
    with api.seed() as session:
        project = session.get(Project, project_id)
        assert project is not None
        assert project.status.value == "importing"
        assert (project.progress or {}).get("step") == "awaiting_upload"
        assert project.config.dataset.path is None


def _tree_entries(extra: dict[str, bytes]) -> dict[str, bytes]:
    return {
        "train/cat/0.png": png_bytes(),
        "train/dog/0.png": png_bytes(),
        "test/cat/0.png": png_bytes(),
        "test/dog/0.png": png_bytes(),
        **extra,
    }


HOSTILE_UPLOADS: dict[str, tuple[str, str, Callable[[], bytes], str]] = {
    # case: (project format, file name, content, a regular expression the message must match)
    "zip entry with dot-dot": (
        "imagefolder",
        "tree.zip",
        lambda: zip_bytes(_tree_entries({"../../evil.png": png_bytes()})),
        r"\.\./\.\./evil\.png.*outside",
    ),
    "zip entry with an absolute path": (
        "imagefolder",
        "tree.zip",
        lambda: zip_bytes(_tree_entries({"/tmp/evil.png": png_bytes()})),
        r"/tmp/evil\.png.*(outside|absolute)",
    ),
    "zip bomb": (
        "imagefolder",
        "bomb.zip",
        # 4 MiB of zeros deflate to a few KiB: far more unpacked than the 64 KiB allowed.
        lambda: zip_bytes(_tree_entries({"train/cat/big.png": bytes(4 * 1024 * 1024)})),
        r"bomb\.zip.*(unpack|uncompress)",
    ),
    "zip with a decompression bomb image": (
        "imagefolder",
        "tree.zip",
        lambda: zip_bytes(_tree_entries({"train/dog/1.png": decompression_bomb_png()})),
        r"1\.png.*decompression",
    ),
    "zip with mixed image sizes": (
        "imagefolder",
        "tree.zip",
        lambda: zip_bytes(_tree_entries({"train/dog/1.png": png_bytes(9, 9)})),
        r"1\.png.*size 9x9 differs",
    ),
    "zip with a non-image file": (
        "imagefolder",
        "tree.zip",
        lambda: zip_bytes(_tree_entries({"train/dog/readme.txt": b"hi"})),
        r"readme\.txt.*not an image",
    ),
    "not a zip": ("imagefolder", "tree.zip", lambda: b"PK but not really a zip file", r"tree\.zip.*zip"),
    "empty zip": ("imagefolder", "tree.zip", lambda: zip_bytes({}), r"train.*missing folder"),
    "truncated npz": ("npz", "data.npz", lambda: npz_bytes()[:500], r"(truncated|not a readable)"),
    "npz label count": (
        "npz",
        "data.npz",
        lambda: npz_bytes(y_test=np.array([0, 1])),
        r"2 labels.*3 images",
    ),
    "wrong suffix": ("npz", "data.pkl", lambda: b"\x80\x04K\x01.", r"data\.pkl.*\.npz"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_UPLOADS))
def test_a_hostile_upload_is_refused_and_leaves_no_file(
    api: Api, lead_headers: dict[str, str], case: str
) -> None:
    dataset_format, name, content, pattern = HOSTILE_UPLOADS[case]
    project_id = awaiting_upload(api, lead_headers, dataset_format)
    response = upload(api, lead_headers, project_id, name, content())
    assert_upload_refused(api, project_id, response, pattern)
    root = import_root(api)
    assert not any(path.name == "evil.png" for path in root.parent.rglob("*"))


def test_a_valid_upload_is_accepted_after_a_refused_one(api: Api, lead_headers: dict[str, str]) -> None:
    project_id = awaiting_upload(api, lead_headers, "imagefolder")
    refused = upload(api, lead_headers, project_id, "tree.zip", zip_bytes({"../x.png": png_bytes()}))
    assert refused.status_code == 422
    accepted = upload(api, lead_headers, project_id, "tree.zip", zip_bytes(_tree_entries({})))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["progress"]["step"] == "importing"


def test_an_upload_to_a_project_already_importing_is_a_409_and_keeps_its_files(
    api: Api, lead_headers: dict[str, str]
) -> None:
    project_id = awaiting_upload(api, lead_headers, "imagefolder")
    accepted = upload(api, lead_headers, project_id, "tree.zip", zip_bytes(_tree_entries({})))
    assert accepted.status_code == 200, accepted.text
    kept = stored_files(api)
    assert kept  # the unpacked tree the import will read
    again = upload(api, lead_headers, project_id, "tree.zip", zip_bytes(_tree_entries({})))
    assert again.status_code == 409, again.text
    assert stored_files(api) == kept


def test_an_upload_over_the_body_limit_is_refused_before_it_is_read(
    api: Api, lead_headers: dict[str, str]
) -> None:
    project_id = awaiting_upload(api, lead_headers, "npz")
    response = upload(api, lead_headers, project_id, "data.npz", bytes(MAX_BODY + 1))
    assert response.status_code == 413
    assert "AQPL_MAX_UPLOAD_BYTES" in detail(response)
    assert stored_files(api) == []


# ---------------------------------------------------------------- API bad input


@pytest.fixture
def task(api: Api) -> tuple[dict[str, str], int]:
    """An annotator's headers and the id of the task they hold."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        make_annotating_round(session, lead, queries=2)
        annotator = make_user(session, Role.annotator)
    headers = api.headers_for(annotator)
    response = api.client.post("/api/v1/tasks/next", headers=headers)
    assert response.status_code == 200, response.text
    return headers, int(response.json()["id"])


def submit(api: Api, headers: dict[str, str], task_id: int | str, body: Any, key: str | None = "k") -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    if isinstance(body, bytes | str):
        return api.client.post(
            f"/api/v1/tasks/{task_id}/annotation",
            content=body,
            headers={**headers, **extra, "Content-Type": "application/json"},
        )
    return api.client.post(f"/api/v1/tasks/{task_id}/annotation", json=body, headers={**headers, **extra})


@pytest.mark.parametrize(
    "body",
    [
        {"sigma_index": -1},
        {"sigma_index": 91},
        {"sigma_index": 10**30},
        {"sigma_index": "40"},
        {"sigma_index": 40.5},
        {"sigma_index": True},
        {"sigma_index": None},
        {"sigma_index": [40]},
        {},
        {"sigma_index": 40, "unknown_field": 1},
        {"sigma_index": 40, "seconds": -1},
        {"sigma_index": 40, "seconds": "soon"},
        '{"sigma_index": 40, "seconds": 1e999}',
        '{"sigma_index": 40, "seconds": NaN}',
        [],
        "not json",
        b"\xff\xfe\x00garbage",
        "",
        '{"sigma_index": 40',
    ],
    ids=lambda body: json.dumps(body if not isinstance(body, bytes) else body.hex())[:40],
)
def test_a_bad_answer_is_a_422_and_changes_nothing(
    api: Api, task: tuple[dict[str, str], int], body: Any
) -> None:
    headers, task_id = task
    response = submit(api, headers, task_id, body)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    good = submit(api, headers, task_id, {"sigma_index": 40})
    assert good.status_code == 201, good.text  # the bad attempt left the task answerable


@pytest.mark.parametrize("key", [None, "", "x" * 101])
def test_a_bad_idempotency_key_is_a_422(api: Api, task: tuple[dict[str, str], int], key: str | None) -> None:
    headers, task_id = task
    response = submit(api, headers, task_id, {"sigma_index": 40}, key=key)
    assert response.status_code == 422, response.text


def test_a_body_over_the_limit_is_a_413_by_content_length(api: Api, task: tuple[dict[str, str], int]) -> None:
    headers, task_id = task
    padding = "x" * (MAX_BODY + 10)
    response = submit(api, headers, task_id, json.dumps({"sigma_index": 40, "pad": padding}))
    assert response.status_code == 413
    assert str(MAX_BODY) in detail(response)


def test_a_streamed_body_over_the_limit_is_a_413(api: Api, task: tuple[dict[str, str], int]) -> None:
    """No Content-Length (chunked): the bytes are counted as they arrive."""
    headers, task_id = task

    def chunks() -> Iterator[bytes]:
        yield b'{"sigma_index": 40, "pad": "'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"y" * 1024
        yield b'"}'

    response = api.client.post(
        f"/api/v1/tasks/{task_id}/annotation",
        content=chunks(),
        headers={**headers, "Idempotency-Key": "streamed", "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert str(MAX_BODY) in detail(response)


def test_a_streamed_body_under_the_limit_is_accepted(api: Api, task: tuple[dict[str, str], int]) -> None:
    headers, task_id = task

    def chunks() -> Iterator[bytes]:
        yield b'{"sigma_index": '
        yield b"40}"

    response = api.client.post(
        f"/api/v1/tasks/{task_id}/annotation",
        content=chunks(),
        headers={**headers, "Idempotency-Key": "streamed-small", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


def test_a_malformed_content_length_is_a_400(api: Api) -> None:
    response = api.client.post("/api/v1/auth/login", content=b"{}", headers={"Content-Length": "12abc"})
    assert response.status_code in (400, 413, 422), response.text


UNKNOWN_IDS = ["999999", str(2**31), str(2**63), str(2**64 + 5), "-1", "0", "abc", "1e3", "%00"]


def operations(api: Api) -> list[tuple[str, str]]:
    """(method, path template) of every operation with a path parameter, from /openapi.json."""
    schema = api.client.get("/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if "{" in path
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_unknown_or_absurd_ids_are_4xx_on_every_endpoint(api: Api) -> None:
    with api.seed() as session:
        admin = make_user(session, Role.admin)
    headers = {**api.headers_for(admin), "Idempotency-Key": str(uuid.uuid4())}
    ops = operations(api)
    assert len(ops) >= 15, ops  # the schema lists the platform's endpoints
    server_errors = []
    for method, template in ops:
        for raw_id in UNKNOWN_IDS:
            path = re.sub(r"\{[^}]+\}", raw_id, template)
            body = {"sigma_index": 40} if path.endswith("/annotation") else {}
            response = api.client.request(
                method,
                path,
                params={"sigma_index": 3},
                json=body if method != "GET" else None,
                headers=headers,
            )
            if response.status_code >= 500:
                server_errors.append((method, path, response.status_code, response.text[:200]))
            else:
                assert 400 <= response.status_code < 500, (method, path, response.status_code)
    assert server_errors == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/projects/{project}/examples", {"offset": -1}),
        ("/api/v1/projects/{project}/examples", {"limit": 10**9}),
        ("/api/v1/projects/{project}/examples", {"offset": 2**63}),
        ("/api/v1/projects/{project}/examples", {"offset": 2**70}),
        ("/api/v1/projects/{project}/examples", {"split": "validation"}),
        ("/api/v1/projects/{project}/export", {"format": "pickle"}),
        ("/api/v1/examples/{example}/render.png", {"sigma_index": 91}),
        ("/api/v1/examples/{example}/render.png", {"sigma_index": -1}),
        ("/api/v1/examples/{example}/render.png", {"sigma_index": "x"}),
        ("/api/v1/tasks/next", {"project_id": 2**63}),
    ],
)
def test_bad_query_parameters_are_4xx(api: Api, path: str, params: dict[str, Any]) -> None:
    """On rows that exist, so that the parameter itself is what gets refused."""
    with api.seed() as session:
        admin = make_user(session, Role.admin)
        project, _round, queries = make_annotating_round(session, admin, queries=1)
        example_id = queries[0].example_id
    url = path.format(project=project.id, example=example_id)
    method = "POST" if url.endswith("/next") else "GET"
    response = api.client.request(method, url, params=params, headers=api.headers_for(admin))
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "dataset": {"format": "digits"}, "overlap": 0},
        {"name": "x", "dataset": {"format": "digits"}, "overlap": "three"},
        {"name": "x", "dataset": {"format": "pickle"}},
        {"name": "x", "dataset": {"format": "digits"}, "initial_sigma": 0.95},
        {"name": "x", "dataset": {"format": "digits"}, "seed": 2**63},
        {"name": "x", "dataset": {"format": "digits"}, "unknown": True},
        {"name": "x", "dataset": {"format": "digits", "path": "/etc"}},
        {"name": "", "dataset": {"format": "digits"}},
        {"name": "x" * 10_000, "dataset": {"format": "digits"}},
        {"dataset": {"format": "digits"}},
        {"name": "x", "dataset": {"format": "npz", "path": "\x00"}},
        {"name": "x", "dataset": {"format": "npz", "path": "a" * 5000}},
    ],
)
def test_a_bad_project_body_is_a_422_and_makes_nothing(
    api: Api, lead_headers: dict[str, str], body: dict[str, Any]
) -> None:
    before = project_count(api)
    response = api.client.post("/api/v1/projects", json=body, headers=lead_headers)
    assert response.status_code == 422, response.text
    assert project_count(api) == before


# ---------------------------------------------------------------- nothing is ever unpickled

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("aqpl", "backend", "worker", "migrations", "benchmarks", "frontend")
# The one place allowed to run a pickle machine: CIFAR-10 ships as pickles, read by an unpickler
# whose find_class imports nothing (aqpl/datasets/cifar10.py, _RestrictedUnpickler).
RESTRICTED_CIFAR_READER = "aqpl/datasets/cifar10.py"
UNPICKLING = {
    "torch.load": re.compile(r"\btorch\s*\.\s*(jit\s*\.\s*)?load\s*\("),
    "pickle": re.compile(
        r"^\s*(import|from)\s+(c?pickle|_pickle|dill|cloudpickle|joblib|shelve)\b|\bpickle\s*\.\s*(loads?|Unpickler)\b",
        re.MULTILINE,
    ),
    "np.load(allow_pickle=True)": re.compile(r"allow_pickle\s*=\s*True"),
    "marshal": re.compile(r"\bmarshal\s*\.\s*loads?\s*\("),
}


def test_no_code_path_unpickles_outside_the_restricted_cifar_reader() -> None:
    """Checkpoints are safetensors + JSON; arrays load with allow_pickle=False; Celery speaks JSON only."""
    offenders = []
    for folder in SOURCE_FOLDERS:
        for file in sorted((REPO_ROOT / folder).rglob("*.py")):
            relative = file.relative_to(REPO_ROOT).as_posix()
            text = file.read_text(encoding="utf-8")
            for name, pattern in UNPICKLING.items():
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    if relative == RESTRICTED_CIFAR_READER and name == "pickle":
                        continue
                    offenders.append(f"{relative}:{line}: {name}")
    assert offenders == []


def test_the_cifar_reader_refuses_every_pickled_global() -> None:
    source = (REPO_ROOT / RESTRICTED_CIFAR_READER).read_text(encoding="utf-8")
    assert "class _RestrictedUnpickler(pickle.Unpickler)" in source
    assert "def find_class" in source
    assert "pickle.load(" not in source and "pickle.loads(" not in source  # only the restricted one


def test_the_task_queue_accepts_json_only(tmp_path: Path) -> None:
    from backend.queue import make_celery
    from backend.settings import Settings

    celery = make_celery(Settings(data_dir=tmp_path))
    assert celery.conf.task_serializer == "json"
    assert list(celery.conf.accept_content) == ["json"]
    assert celery.conf.result_serializer in (None, "json")
