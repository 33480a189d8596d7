"""Every dataset loader on small files written here, and each malformed input's error message."""

from __future__ import annotations

import gzip
import pickle  # noqa: TID251 -- writes fake CIFAR-10 batches the way the real distribution does
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aqpl.datasets import (
    DATASET_FORMATS,
    DatasetError,
    ImageDataset,
    load_dataset,
    stratified_subset,
)
from tests.conftest import SHARED_DATA

# ---------------------------------------------------------------- writers of tiny datasets


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(
    folder: Path,
    *,
    gz: bool,
    train: int = 20,
    test: int = 10,
    side: int = 28,
    overrides: dict[str, bytes] | None = None,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        data = (overrides or {}).get(stem, idx_bytes(array))
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def write_cifar(
    folder: Path,
    *,
    per_batch: int = 4,
    protocol: int = 2,
    overrides: dict[str, object] | None = None,
) -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    contents: dict[str, dict[str, object]] = {}
    for index, name in enumerate([*(f"data_batch_{n}" for n in range(1, 6)), "test_batch"]):
        contents[name] = {
            "batch_label": f"batch {index}".encode(),
            "labels": [int(label) for label in (np.arange(per_batch) + index) % 10],
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{index}_{i}.png".encode() for i in range(per_batch)],
        }
    contents["batches.meta"] = {
        "label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ],
        "num_cases_per_batch": per_batch,
        "num_vis": 3072,
    }
    for name, content in contents.items():
        payload = (overrides or {}).get(name, content)
        if isinstance(payload, bytes):
            (folder / name).write_bytes(payload)
        else:
            (folder / name).write_bytes(pickle.dumps(payload, protocol=protocol))
    return contents


def write_npz(path: Path, **overrides: object) -> None:
    rng = np.random.default_rng(2)
    arrays: dict[str, object] = {
        "x_train": rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
        "y_train": np.arange(12) % 3,
        "x_test": rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        "y_test": np.arange(6) % 3,
        "class_names": np.array(["cat", "dog", "eel"]),
    }
    arrays.update(overrides)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})


def write_image_tree(root: Path, *, mode: str = "L", size: tuple[int, int] = (10, 12)) -> None:
    rng = np.random.default_rng(3)
    channels = (3,) if mode == "RGB" else ()
    for split, count in (("train", 3), ("test", 2)):
        for class_name in ("circle", "square"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
                Image.fromarray(pixels, mode=mode).save(folder / f"{index}.png")


# ---------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_load_gzipped_or_plain(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path, gz=gz)
    dataset = load_dataset("mnist", tmp_path)
    assert dataset.name == "mnist"
    assert dataset.x_train.shape == (20, 28, 28, 1) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (10, 28, 28, 1)
    assert dataset.y_train.dtype == np.int64
    np.testing.assert_array_equal(dataset.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(dataset.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert dataset.class_names == tuple("0123456789")
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10


@pytest.mark.parametrize("layout", [Path("MNIST") / "raw", Path("raw")])
def test_mnist_accepts_a_parent_folder(tmp_path: Path, layout: Path) -> None:
    write_mnist(tmp_path / layout, gz=True)
    assert load_dataset("mnist", tmp_path).x_train.shape == (20, 28, 28, 1)


def test_mnist_truncated_images_name_file_and_counts(tmp_path: Path) -> None:
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    write_mnist(tmp_path, gz=True, overrides={"train-images-idx3-ubyte": idx_bytes(images)[:1016]})
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", tmp_path)
    assert str(error.value) == "train-images-idx3-ubyte.gz: truncated: expected 15680 pixel bytes, found 1000"


def test_mnist_truncated_gzip_stream_is_a_dataset_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(
        DatasetError, match=r"^t10k-labels-idx1-ubyte\.gz: truncated gzip stream while reading label bytes"
    ):
        load_dataset("mnist", tmp_path)


def test_mnist_bad_magic_number(tmp_path: Path) -> None:
    labels = np.arange(20, dtype=np.uint8) % 10
    bad = struct.pack(">I", 0x0803) + idx_bytes(labels)[4:]
    write_mnist(tmp_path, gz=False, overrides={"train-labels-idx1-ubyte": bad})
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", tmp_path)
    assert str(error.value).startswith(
        "train-labels-idx1-ubyte: bad magic number 0x00000803, expected 0x00000801"
    )


def test_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(
        tmp_path, gz=True, overrides={"t10k-labels-idx1-ubyte": idx_bytes(np.zeros(9, dtype=np.uint8))}
    )
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", tmp_path)
    assert str(error.value) == "t10k-labels-idx1-ubyte: 9 labels but t10k-images-idx3-ubyte has 10 images"


def test_mnist_label_out_of_range(tmp_path: Path) -> None:
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[7] = 12
    write_mnist(tmp_path, gz=True, overrides={"train-labels-idx1-ubyte": idx_bytes(labels)})
    with pytest.raises(
        DatasetError, match=r"^train-labels-idx1-ubyte: label 12 at index 7 is outside 0\.\.9"
    ):
        load_dataset("mnist", tmp_path)


def test_mnist_trailing_bytes_and_missing_file(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8) % 10
    write_mnist(tmp_path / "a", gz=False, overrides={"t10k-labels-idx1-ubyte": idx_bytes(labels) + b"x"})
    with pytest.raises(
        DatasetError, match=r"^t10k-labels-idx1-ubyte: unexpected data after the 10 label bytes"
    ):
        load_dataset("mnist", tmp_path / "a")
    write_mnist(tmp_path / "b", gz=True)
    (tmp_path / "b" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: missing file"):
        load_dataset("mnist", tmp_path / "b")


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_batches_load_without_unpickling_objects(tmp_path: Path, protocol: int) -> None:
    contents = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    dataset = load_dataset("cifar10", tmp_path)  # the parent of cifar-10-batches-py
    assert dataset.name == "cifar10"
    assert dataset.x_train.shape == (20, 32, 32, 3) and dataset.x_test.shape == (4, 32, 32, 3)
    assert dataset.class_names[:3] == ("airplane", "automobile", "bird") and dataset.num_classes == 10
    first = contents["data_batch_1"]
    pixels = np.asarray(first["data"])
    # channel-major rows: the first 1024 values are the red plane
    np.testing.assert_array_equal(dataset.x_train[0, :, :, 0].ravel(), pixels[0, :1024])
    np.testing.assert_array_equal(dataset.x_train[0, :, :, 2].ravel(), pixels[0, 2048:])
    np.testing.assert_array_equal(dataset.y_train[:4], first["labels"])
    np.testing.assert_array_equal(dataset.y_test, contents["test_batch"]["labels"])


class Payload:
    """An object whose unpickling would run code: the loader must refuse it, not build it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_cifar10_refuses_pickled_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar(tmp_path, overrides={"data_batch_3": {"data": Payload(), "labels": []}})
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", tmp_path)
    # protocol 2 spells the module the Python 2 way
    assert str(error.value) == (
        "data_batch_3: unreadable CIFAR-10 pickle: refuses to load the pickled object __builtin__.print"
    )
    assert "unpickled!" not in capsys.readouterr().out


def test_cifar10_object_dtype_array_is_refused(tmp_path: Path) -> None:
    objects = np.array([[1, 2]], dtype=object)
    write_cifar(tmp_path, overrides={"test_batch": {"data": objects, "labels": [0]}})
    with pytest.raises(DatasetError, match=r"^test_batch: unreadable CIFAR-10 pickle"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_malformed_batches(tmp_path: Path) -> None:
    good = write_cifar(tmp_path / "ok")
    batch = dict(good["data_batch_2"])

    cases: list[tuple[str, object, str]] = [
        (
            "data_batch_2",
            pickle.dumps(batch, protocol=2)[:200],
            r"^data_batch_2: truncated: the pickle ends early",
        ),
        ("data_batch_2", {**batch, "labels": [0, 1, 2]}, r"^data_batch_2: 3 labels but 4 images"),
        (
            "data_batch_2",
            {**batch, "labels": [0, 1, 10, 3]},
            r"^data_batch_2: label 10 at index 2 is outside 0\.\.9",
        ),
        (
            "data_batch_2",
            {**batch, "labels": [0, -1, 2, 3]},
            r"^data_batch_2: label -1 at index 1 is outside",
        ),
        (
            "data_batch_2",
            {**batch, "data": np.zeros((4, 100), np.uint8)},
            r"^data_batch_2: 'data' rows have 100",
        ),
        (
            "data_batch_2",
            {**batch, "data": np.zeros((4, 3072), np.float32)},
            r"^data_batch_2: 'data' must be a uint8 array",
        ),
        ("data_batch_2", {"labels": [0]}, r"^data_batch_2: missing key 'data'"),
        ("batches.meta", {"num_vis": 3072}, r"^batches\.meta: missing or empty 'label_names'"),
        ("test_batch", b"not a pickle at all", r"^test_batch: (unreadable|corrupt|truncated)"),
    ]
    for index, (name, payload, pattern) in enumerate(cases):
        folder = tmp_path / f"case{index}"
        write_cifar(folder, overrides={name: payload})
        with pytest.raises(DatasetError, match=pattern):
            load_dataset("cifar10", folder)
    folder = tmp_path / "missing"
    write_cifar(folder)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_5: missing file"):
        load_dataset("cifar10", folder)


# ---------------------------------------------------------------- .npz


def test_npz_loads_with_class_names_and_grey_images(tmp_path: Path) -> None:
    write_npz(tmp_path / "shapes.npz")
    dataset = load_dataset("npz", tmp_path / "shapes.npz")
    assert dataset.name == "shapes"
    assert dataset.x_train.shape == (12, 8, 8, 3) and dataset.class_names == ("cat", "dog", "eel")
    grey = np.zeros((5, 6, 6), dtype=np.uint8)
    write_npz(
        tmp_path / "grey.npz",
        x_train=grey,
        y_train=np.arange(5),
        x_test=grey,
        y_test=np.arange(5),
        class_names=None,
    )
    grey_dataset = load_dataset("npz", tmp_path / "grey.npz")
    assert grey_dataset.image_shape == (6, 6, 1)
    assert grey_dataset.class_names == ("0", "1", "2", "3", "4")  # from the largest label


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x_train": np.zeros((12, 8, 8, 3), np.float32)}, "shapes.npz: x_train must be uint8, got float32"),
        (
            {"x_test": np.zeros((6, 8), np.uint8)},
            "shapes.npz: x_test must have shape (N, H, W) or (N, H, W, C)",
        ),
        ({"x_test": np.zeros((6, 8, 8, 4), np.uint8)}, "shapes.npz: x_test must have shape"),
        ({"y_train": np.zeros((12, 1), np.int64)}, "shapes.npz: y_train must be a 1-D integer array"),
        ({"y_train": np.zeros(12, np.float64)}, "shapes.npz: y_train must be a 1-D integer array"),
        ({"y_test": np.arange(5)}, "shapes.npz: 5 labels in y_test but 6 images in x_test"),
        ({"y_test": np.array([0, 1, 2, 3, 0, 1])}, "shapes.npz: y_test: label 3 at index 3 is outside 0..2"),
        ({"y_train": np.arange(12) - 1}, "shapes.npz: y_train label -1 at index 0 is negative"),
        ({"x_test": np.zeros((6, 9, 9, 3), np.uint8)}, "shapes.npz: x_train images are (8, 8, 3) but x_test"),
        ({"y_test": None}, "shapes.npz: missing array(s) y_test"),
        (
            {"class_names": np.array([1, 2, 3])},
            "shapes.npz: class_names must be a non-empty 1-D array of strings",
        ),
        (
            {"y_test": np.array([0, 1, 2, 0, 1, None], dtype=object)},
            "shapes.npz: not a readable .npz archive",
        ),
    ],
)
def test_npz_malformed(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    write_npz(tmp_path / "shapes.npz", **overrides)
    with pytest.raises(DatasetError) as error:
        load_dataset("npz", tmp_path / "shapes.npz")
    assert str(error.value).startswith(message)


def test_npz_truncated_or_not_an_archive(tmp_path: Path) -> None:
    write_npz(tmp_path / "shapes.npz")
    data = (tmp_path / "shapes.npz").read_bytes()
    (tmp_path / "shapes.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"^shapes\.npz: not a readable \.npz archive"):
        load_dataset("npz", tmp_path / "shapes.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DatasetError, match=r"^single\.npy: not an \.npz archive \(it holds a single array\)"):
        load_dataset("npz", tmp_path / "single.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetError, match=r"^text\.npz: not a readable \.npz archive"):
        load_dataset("npz", tmp_path / "text.npz")


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3)])
def test_imagefolder_loads_classes_from_folder_names(tmp_path: Path, mode: str, channels: int) -> None:
    write_image_tree(tmp_path / "toys", mode=mode)
    dataset = load_dataset("imagefolder", tmp_path / "toys")
    assert dataset.name == "toys"
    assert dataset.class_names == ("circle", "square")
    assert dataset.x_train.shape == (6, 12, 10, channels) and dataset.x_test.shape == (4, 12, 10, channels)
    np.testing.assert_array_equal(dataset.y_train, [0, 0, 0, 1, 1, 1])
    saved = np.asarray(Image.open(tmp_path / "toys" / "train" / "square" / "1.png"))
    np.testing.assert_array_equal(dataset.x_train[4].reshape(saved.shape), saved)


def test_imagefolder_malformed(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "sizes")
    odd = tmp_path / "sizes" / "test" / "square" / "odd.png"
    Image.new("L", (11, 12)).save(odd)
    with pytest.raises(DatasetError) as error:
        load_dataset("imagefolder", tmp_path / "sizes")
    assert str(error.value).startswith(f"{odd}: size 11x12 differs from 10x12 of ")

    write_image_tree(tmp_path / "modes")
    mixed = tmp_path / "modes" / "train" / "square" / "rgb.png"
    Image.new("RGB", (10, 12)).save(mixed)
    with pytest.raises(DatasetError, match=r"rgb\.png: mode RGB differs from L of "):
        load_dataset("imagefolder", tmp_path / "modes")

    write_image_tree(tmp_path / "broken")
    broken = tmp_path / "broken" / "train" / "circle" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match=r"broken\.png: unreadable image"):
        load_dataset("imagefolder", tmp_path / "broken")

    write_image_tree(tmp_path / "notes")
    (tmp_path / "notes" / "train" / "circle" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"notes\.txt: not an image file"):
        load_dataset("imagefolder", tmp_path / "notes")

    write_image_tree(tmp_path / "alpha")
    Image.new("RGBA", (10, 12)).save(tmp_path / "alpha" / "train" / "circle" / "0.png")
    with pytest.raises(DatasetError, match=r"0\.png: image mode RGBA is not supported"):
        load_dataset("imagefolder", tmp_path / "alpha")

    write_image_tree(tmp_path / "extra")
    (tmp_path / "extra" / "test" / "triangle").mkdir()
    with pytest.raises(DatasetError, match=r"triangle: class 'triangle' has no train/ folder"):
        load_dataset("imagefolder", tmp_path / "extra")

    (tmp_path / "no_test" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no_test/test: missing folder"):
        load_dataset("imagefolder", tmp_path / "no_test")


def test_imagefolder_decompression_bomb_is_a_dataset_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image_tree(tmp_path / "bomb")
    # Lower Pillow's limit so that a 10x12 image counts as a bomb (120 pixels > 2 x 50).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(DatasetError, match=r"0\.png: too many pixels \(Pillow's decompression-bomb limit\)"):
        load_dataset("imagefolder", tmp_path / "bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 120 pixels: a warning in Pillow, still refused
    with pytest.raises(DatasetError, match=r"too many pixels"):
        load_dataset("imagefolder", tmp_path / "bomb")


# ---------------------------------------------------------------- digits, limits, general


def test_digits_are_32x32_grey_with_a_fixed_stratified_split() -> None:
    dataset = load_dataset("digits")
    assert dataset.name == "digits"
    assert dataset.x_train.shape[1:] == (32, 32, 1) and dataset.x_train.dtype == np.uint8
    assert len(dataset.x_train) + len(dataset.x_test) == 1797
    assert len(dataset.x_test) == 359  # 20 %
    assert dataset.class_names == tuple("0123456789")
    test_share = np.bincount(dataset.y_test) / np.bincount(np.concatenate([dataset.y_train, dataset.y_test]))
    assert np.all(np.abs(test_share - 0.2) < 0.02)
    assert dataset.x_train.max() == 255 and dataset.x_train.min() == 0
    again = load_dataset("digits", seed=5)  # the seed drives limits only; the split is fixed
    np.testing.assert_array_equal(again.y_test, dataset.y_test)


def test_limits_are_stratified_seeded_and_deterministic() -> None:
    full = load_dataset("digits")
    small = load_dataset("digits", train_limit=100, test_limit=50, seed=3)
    assert len(small.x_train) == 100 and len(small.x_test) == 50
    expected = np.bincount(full.y_train) * 100 / len(full.y_train)
    assert np.all(np.abs(np.bincount(small.y_train, minlength=10) - expected) < 1)
    same = load_dataset("digits", train_limit=100, test_limit=50, seed=3)
    np.testing.assert_array_equal(small.x_train, same.x_train)
    other = load_dataset("digits", train_limit=100, test_limit=50, seed=4)
    assert not np.array_equal(small.x_train, other.x_train)
    assert len(load_dataset("digits", train_limit=10_000).x_train) == len(full.x_train)


def test_stratified_subset_keeps_rare_classes_in_proportion() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    chosen = stratified_subset(labels, 20, np.random.default_rng(0))
    assert np.bincount(labels[chosen]).tolist() == [18, 2]
    assert np.all(np.diff(chosen) > 0)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_limits_must_be_positive_integers(limit: object) -> None:
    with pytest.raises(DatasetError, match="train_limit: must be a positive integer"):
        load_dataset("digits", train_limit=limit)  # type: ignore[arg-type]


def test_unknown_format_missing_path_and_nonexistent_path(tmp_path: Path) -> None:
    assert DATASET_FORMATS == ("mnist", "cifar10", "npz", "imagefolder", "digits")
    with pytest.raises(DatasetError, match="svhn: unknown dataset format"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(DatasetError, match="npz: a path is required"):
        load_dataset("npz")
    with pytest.raises(DatasetError, match=r"nowhere\.npz: does not exist"):
        load_dataset("npz", tmp_path / "nowhere.npz")


def test_image_dataset_checks_its_own_arrays() -> None:
    images = np.zeros((2, 4, 4, 1), np.uint8)
    with pytest.raises(DatasetError, match=r"label 5 at index 1 is outside 0\.\.1"):
        ImageDataset("toy", images, np.array([0, 5]), images, np.array([0, 1]), ("a", "b"))
    with pytest.raises(DatasetError, match="train images must be uint8"):
        ImageDataset("toy", images.astype(np.float32), np.array([0, 1]), images, np.array([0, 1]), ("a", "b"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the real data, when present


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist is absent")
def test_real_mnist_loads() -> None:
    dataset = load_dataset("mnist", SHARED_DATA / "mnist")
    assert dataset.x_train.shape == (60_000, 28, 28, 1) and dataset.x_test.shape == (10_000, 28, 28, 1)
    assert np.bincount(dataset.y_test).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10-subset.npz").is_file(), reason="../shared/data/cifar10-subset.npz is absent"
)
def test_real_cifar_subset_loads() -> None:
    dataset = load_dataset("npz", SHARED_DATA / "cifar10-subset.npz", test_limit=100)
    assert dataset.x_train.shape == (4000, 32, 32, 3) and dataset.x_test.shape == (100, 32, 32, 3)
    assert dataset.num_classes == 10
    assert (
        np.bincount(dataset.y_test).tolist() == [10] * 10 or abs(np.bincount(dataset.y_test) - 10).max() <= 3
    )
