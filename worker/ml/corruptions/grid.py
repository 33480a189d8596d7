"""A picture of a corruption suite: one row per corruption, one column per severity, for the docs.

Rows, top to bottom: the clean images, Gaussian noise (each cell captioned with its c), then the
suite's corruptions in its own order. A corruption's cell sits in the column of its severity, so
a suite that uses one severity per corruption (mnist-c) shows which one. Each cell is the same
few images side by side, enlarged by whole-pixel repetition (nearest neighbour) so no resampling
filter blurs or sharpens what the corruption did, and framed in grey so that white or black image
borders (mnist-c's stripe, a white sky) stay visible against the page.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from worker.ml.corruptions import CorruptionSuite

_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)
_FRAME = (128, 128, 128)  # mid grey: tells both white and black image edges from the page
_PAD = 8  # pixels around the whole picture and between a row label and the first cell
_CELL_GAP = 8  # pixels between neighbouring cells, across and down
_IMAGE_GAP = 2  # pixels of frame between the images within one cell
_CAPTION_GAP = 3  # pixels between a caption and the images under it

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def suite_grid(
    suite: CorruptionSuite,
    clean_images: npt.NDArray[np.uint8],
    *,
    images_per_cell: int = 3,
    scale: int = 3,
    font_size: int = 14,
    title: str | None = None,
) -> Image.Image:
    """An RGB picture of `suite` on the first `images_per_cell` of `clean_images`.

    `clean_images` are the images the suite was built from. `scale` is the whole number of picture
    pixels per image pixel; `title` defaults to the suite's name.
    """
    if clean_images.dtype != np.uint8 or clean_images.ndim != 4 or clean_images.shape[3] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, H, W, C) images with C in {{1, 3}}, "
            f"got {clean_images.dtype} {clean_images.shape}"
        )
    if images_per_cell < 1 or scale < 1:
        raise ValueError(f"images_per_cell and scale must be at least 1, got {images_per_cell}, {scale}")
    for name, level, images in suite.items():
        if images.shape != clean_images.shape:
            raise ValueError(
                f"{name} {level}: suite images are {images.shape}, clean images {clean_images.shape}"
            )
    count = min(images_per_cell, len(clean_images))
    if count == 0:
        raise ValueError("no images to draw")
    font: _Font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return math.ceil(right - left), math.ceil(bottom - top)

    levels = sorted({level for by_severity in suite.corruptions.values() for level in by_severity})
    columns = max(len(levels), len(suite.gaussian), 1)
    column_labels = [f"severity {level}" for level in levels] + [""] * (columns - len(levels))
    row_labels = ["clean", "Gaussian noise (c)", *suite.corruptions]

    height, width = int(clean_images.shape[1]), int(clean_images.shape[2])
    cell_width = count * width * scale + (count + 1) * _IMAGE_GAP
    cell_height = height * scale + 2 * _IMAGE_GAP
    line_height = max(text_size(text)[1] for text in ["Ag", *row_labels, *column_labels])
    caption_height = line_height + _CAPTION_GAP
    label_width = max(text_size(text)[0] for text in row_labels) + _PAD
    cell_width = max(cell_width, *(text_size(text)[0] for text in column_labels))
    heading = title if title is not None else suite.name

    # Row tops: the Gaussian row carries a caption line (its c values), the others do not.
    row_heights = [cell_height, caption_height + cell_height] + [cell_height] * len(suite.corruptions)
    grid_top = _PAD + 2 * caption_height + _CAPTION_GAP  # the title, then the column labels
    row_tops = [grid_top + sum(row_heights[:row]) + row * _CELL_GAP for row in range(len(row_heights))]
    picture_width = _PAD + label_width + columns * cell_width + (columns - 1) * _CELL_GAP + _PAD
    picture_height = row_tops[-1] + row_heights[-1] + _PAD
    picture = Image.new(
        "RGB", (max(picture_width, _PAD * 2 + text_size(heading)[0]), picture_height), _BACKGROUND
    )
    draw = ImageDraw.Draw(picture)

    def column_left(column: int) -> int:
        return _PAD + label_width + column * (cell_width + _CELL_GAP)

    def paste_cell(images: npt.NDArray[np.uint8], column: int, top: int) -> None:
        picture.paste(_strip(images[:count], scale), (column_left(column), top))

    draw.text((_PAD, _PAD), heading, fill=_INK, font=font)
    for column, label in enumerate(column_labels):
        draw.text((column_left(column), _PAD + caption_height + _CAPTION_GAP), label, fill=_INK, font=font)
    for row, label in enumerate(row_labels):
        # Labels line up with the images' middle, below any caption.
        middle = row_tops[row] + row_heights[row] - cell_height // 2
        draw.text((_PAD, middle), label, fill=_INK, font=font, anchor="lm")

    paste_cell(clean_images, 0, row_tops[0])
    for column, (c, images) in enumerate(suite.gaussian.items()):
        draw.text((column_left(column), row_tops[1]), f"c = {c:g}", fill=_INK, font=font)
        paste_cell(images, column, row_tops[1] + caption_height)
    for row, by_severity in enumerate(suite.corruptions.values(), start=2):
        for level, images in by_severity.items():
            paste_cell(images, levels.index(level), row_tops[row])
    return picture


def _strip(images: npt.NDArray[np.uint8], scale: int) -> Image.Image:
    """The images side by side in a grey frame, each pixel a scale x scale square, grey made RGB."""
    count, height, width, channels = images.shape
    rgb = np.repeat(images, 3, axis=3) if channels == 1 else images
    enlarged = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    side, top = width * scale, _IMAGE_GAP
    strip = np.empty((height * scale + 2 * _IMAGE_GAP, count * side + (count + 1) * _IMAGE_GAP, 3), np.uint8)
    strip[:] = _FRAME
    for index in range(count):
        left = _IMAGE_GAP + index * (side + _IMAGE_GAP)
        strip[top : top + height * scale, left : left + side] = enlarged[index]
    return Image.fromarray(strip)
