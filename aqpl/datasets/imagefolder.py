"""Class-per-folder images: root/train/<class>/*.png|jpg|jpeg and root/test/<class>/..., read with Pillow.

Inspection reads each file's header and checks its structure without decoding; loading decodes.
Pillow's decompression-bomb limit is checked on the declared size, before any pixel is decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from aqpl.datasets.base import Budget, DatasetError, DatasetInfo, Guard, ImageDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHANNELS = {"L": 1, "RGB": 3}


def _class_folders(split_folder: Path, split: str, guard: Guard) -> list[Path]:
    guard(split_folder)
    if not split_folder.is_dir():
        raise DatasetError(f"{split_folder}: missing folder (expected {split}/<class>/*.png)")
    folders = sorted(
        folder for folder in split_folder.iterdir() if folder.is_dir() and not folder.name.startswith(".")
    )
    if not folders:
        raise DatasetError(f"{split_folder}: no class folders")
    return folders


def _image_files(class_folder: Path, guard: Guard) -> Iterator[Path]:
    for file in sorted(class_folder.iterdir()):
        if file.name.startswith("."):
            continue  # .DS_Store and editor droppings are not data
        guard(file)
        if file.is_dir():
            raise DatasetError(f"{file}: unexpected folder inside a class folder")
        if not file.is_file():  # a pipe or device would block or never end
            raise DatasetError(f"{file}: not a regular file")
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{file}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        yield file


def _read_image(file: Path, *, keep: bool) -> tuple[tuple[int, int], str, npt.NDArray[np.uint8] | None]:
    """(width, height), mode and (when `keep`) the pixels; the header is checked before decoding."""
    try:
        with Image.open(file) as image:
            (width, height), mode = image.size, "L" if image.mode == "1" else image.mode
            limit = Image.MAX_IMAGE_PIXELS
            # Pillow only warns between its limit and twice it; this refuses it, without touching
            # the process-wide warning filters (the API reads images from several threads).
            if limit is not None and width * height > limit:
                raise Image.DecompressionBombError(f"{width}x{height} pixels, more than {limit}")
            if mode not in CHANNELS:
                raise DatasetError(
                    f"{file}: image mode {image.mode} is not supported (save as 8-bit grey 'L' or 'RGB')"
                )
            if not keep:
                image.verify()  # the file's structure (chunks, checksums) without decoding pixels
                return (width, height), mode, None
            image.load()
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise DatasetError(f"{file}: too many pixels (Pillow's decompression-bomb limit): {error}") from error
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as error:
        raise DatasetError(f"{file}: unreadable image: {error}") from error
    return (width, height), mode, pixels if pixels.ndim == 3 else pixels[..., np.newaxis]


def read(path: Path, budget: Budget, *, keep: bool, guard: Guard) -> tuple[DatasetInfo, ImageDataset | None]:
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a folder with train/ and test/ class folders")
    class_folders = {split: _class_folders(path / split, split, guard) for split in ("train", "test")}
    class_names = tuple(folder.name for folder in class_folders["train"])
    reference: tuple[Path, tuple[int, int], str] | None = None
    counts: list[int] = []
    arrays: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for split in ("train", "test"):
        images: list[npt.NDArray[np.uint8]] = []
        labels: list[int] = []
        for class_folder in class_folders[split]:
            guard(class_folder)
            if class_folder.name not in class_names:
                raise DatasetError(f"{class_folder}: class {class_folder.name!r} has no train/ folder")
            for file in _image_files(class_folder, guard):
                size, mode, pixels = _read_image(file, keep=keep)
                if reference is None:
                    reference = (file, size, mode)
                elif size != reference[1]:
                    raise DatasetError(
                        f"{file}: size {size[0]}x{size[1]} differs from {reference[1][0]}x{reference[1][1]} "
                        f"of {reference[0]}"
                    )
                elif mode != reference[2]:
                    raise DatasetError(f"{file}: mode {mode} differs from {reference[2]} of {reference[0]}")
                budget.claim(
                    size[0] * size[1] * CHANNELS[mode], f"{file}: a {size[0]}x{size[1]} {mode} image"
                )
                if pixels is not None:
                    images.append(pixels)
                labels.append(class_names.index(class_folder.name))
        if not labels:
            raise DatasetError(f"{path / split}: no images")
        counts.append(len(labels))
        if keep:
            arrays.append((np.stack(images), np.asarray(labels, dtype=np.int64)))
    assert reference is not None  # every split holds an image
    (width, height), mode = reference[1], reference[2]
    info = DatasetInfo(
        path.name, counts[0], counts[1], (height, width, CHANNELS[mode]), class_names, budget.used
    )
    if not keep:
        return info, None
    (x_train, y_train), (x_test, y_test) = arrays
    return info, ImageDataset(path.name, x_train, y_train, x_test, y_test, class_names)
