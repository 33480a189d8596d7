"""The suite picture: every cell in its row and severity column, enlarged by whole pixels, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.ml.corruptions import CorruptionSuite, build_corruption_suite
from worker.ml.corruptions.grid import suite_grid

HEIGHT, WIDTH, SCALE = 3, 4, 3
IMAGE_GAP = 2  # grid.py's frame between the images of one cell


def solid(colour: tuple[int, int, int], count: int = 3) -> np.ndarray:
    """`count` images of one colour; the last one is a colour the grid must never show (not drawn)."""
    images = np.empty((count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    images[:] = colour
    images[-1] = (1, 2, 3)
    return images


def enlarged(image: np.ndarray) -> np.ndarray:
    """The image as the grid should draw it: each pixel a SCALE x SCALE square, grey made RGB."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return rgb.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def places(picture: np.ndarray, block: np.ndarray) -> list[tuple[int, int]]:
    """(top, left) of every exact copy of `block` in `picture`."""
    height, width = block.shape[:2]
    # Only where the top-left pixel matches can the block start: compare the whole block there.
    corners = np.argwhere(
        np.all(
            picture[: picture.shape[0] - height + 1, : picture.shape[1] - width + 1] == block[0, 0], axis=-1
        )
    )
    return [
        (int(top), int(left))
        for top, left in corners
        if np.array_equal(picture[top : top + height, left : left + width], block)
    ]


def cell_place(picture: np.ndarray, images: np.ndarray, count: int) -> tuple[int, int]:
    """Where the cell of `images` starts, checking its `count` images sit side by side, one frame apart."""
    found = [places(picture, enlarged(image)) for image in images[:count]]
    step = WIDTH * SCALE + IMAGE_GAP
    assert found[0], "the cell is not in the picture"
    first = found[0][0]
    for index, positions in enumerate(found):
        assert (first[0], first[1] + index * step) in positions, (index, positions)
    return first


def test_every_cell_sits_in_its_row_and_severity_column(tmp_path: Path) -> None:
    clean = np.zeros((3, HEIGHT, WIDTH, 3), dtype=np.uint8)
    rows, columns = np.indices((HEIGHT, WIDTH))
    clean[:, (rows + columns) % 2 == 0] = (200, 30, 30)  # a checkerboard shows nearest-neighbour squares
    clean[:, (rows + columns) % 2 == 1] = (30, 200, 30)
    clean[1, 0, 0] = (30, 30, 200)  # the two drawn images differ
    clean[2] = (1, 2, 3)
    suite = CorruptionSuite(
        gaussian={0.1: solid((10, 20, 250)), 0.3: solid((250, 20, 10))},
        corruptions={
            "alpha": {1: solid((240, 240, 10)), 3: solid((10, 240, 240))},
            "beta": {2: solid((240, 10, 240))},
        },
        name="tiny",
    )
    picture_image = suite_grid(suite, clean, images_per_cell=2, scale=SCALE, title="tiny suite")
    path = tmp_path / "grid.png"
    picture_image.save(path)
    with Image.open(path) as reopened:
        assert reopened.format == "PNG" and reopened.mode == "RGB"
        assert reopened.size == picture_image.size
        picture = np.asarray(reopened)
    np.testing.assert_array_equal(picture, np.asarray(picture_image))

    cells = {
        "clean": cell_place(picture, clean, 2),
        "c 0.1": cell_place(picture, suite.gaussian[0.1], 2),
        "c 0.3": cell_place(picture, suite.gaussian[0.3], 2),
        "alpha 1": cell_place(picture, suite.corruptions["alpha"][1], 2),
        "alpha 3": cell_place(picture, suite.corruptions["alpha"][3], 2),
        "beta 2": cell_place(picture, suite.corruptions["beta"][2], 2),
    }
    assert places(picture, np.full((1, 1, 3), (1, 2, 3), dtype=np.uint8)) == []  # only 2 images per cell
    top = {name: place[0] for name, place in cells.items()}
    left = {name: place[1] for name, place in cells.items()}
    # Rows: clean, Gaussian, then the corruptions in the suite's order.
    assert top["clean"] < top["c 0.1"] == top["c 0.3"] < top["alpha 1"] == top["alpha 3"] < top["beta 2"]
    # Columns: severities 1, 2, 3 of the corruptions; the Gaussian levels in order from the first column.
    assert (
        left["clean"] == left["c 0.1"] == left["alpha 1"] < left["c 0.3"] == left["beta 2"] < left["alpha 3"]
    )
    cell_width = 2 * WIDTH * SCALE + IMAGE_GAP
    assert left["beta 2"] - left["alpha 1"] >= cell_width
    assert (
        picture.shape[1] > left["alpha 3"] + cell_width and picture.shape[0] > top["beta 2"] + HEIGHT * SCALE
    )
    pitch = left["beta 2"] - left["alpha 1"]  # one column and the gap after it
    assert picture.shape[1] - left["alpha 3"] < 2 * pitch  # severity 3 is the last column


def test_a_real_grey_suite_is_drawn_with_its_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(2, 28, 28, 1), dtype=np.uint8)
    suite = build_corruption_suite(clean, dataset_key="mnist", corruption_names=("canny_edges", "fog"))
    assert suite.name == "mnist-c"
    picture = np.asarray(suite_grid(suite, clean, images_per_cell=1, scale=SCALE))
    for _, _, images in suite.items():
        assert len(places(picture, enlarged(images[0]))) == 1
    assert places(picture, enlarged(clean[1])) == []
    path = tmp_path / "grey.png"
    Image.fromarray(picture).save(path)
    with Image.open(path) as reopened:
        assert reopened.format == "PNG" and reopened.size == (picture.shape[1], picture.shape[0])


def test_images_that_are_not_the_suites_are_refused() -> None:
    suite = CorruptionSuite(gaussian={0.1: solid((10, 20, 250))}, corruptions={}, name="tiny")
    with pytest.raises(ValueError, match="clean images"):
        suite_grid(suite, solid((0, 0, 0), count=2))
    with pytest.raises(ValueError, match="expected uint8"):
        suite_grid(suite, solid((0, 0, 0)).astype(np.float32))  # type: ignore[arg-type]
