"""MNIST-C corruptions: the contract, determinism, and checks against the reference's own arithmetic."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage
from skimage import color, feature, transform
from skimage.filters import gaussian

from worker.ml.corruptions import mnist_c
from worker.ml.corruptions.mnist_c import (
    CORRUPTION_SEVERITIES,
    IMPLEMENTATION_VERSION,
    SEVERITY_LEVELS,
    SUITE_NAME,
    corrupt_images,
)

Images = npt.NDArray[np.uint8]
NAMES = tuple(CORRUPTION_SEVERITIES)
# The default argument of each function in google-research/mnist-c corruptions.py.
REFERENCE_DEFAULTS = {
    "shot_noise": 5,
    "impulse_noise": 4,
    "glass_blur": 1,
    "motion_blur": 1,
    "shear": 2,
    "scale": 3,
    "rotate": 2,
    "brightness": 5,
    "translate": 3,
    "stripe": 1,
    "fog": 5,
    "spatter": 4,
    "dotted_line": 1,
    "zigzag": 1,
    "canny_edges": 1,
}
DETERMINISTIC = frozenset(
    {"scale", "brightness", "stripe", "canny_edges"}
)  # no random draws in the reference
MNIST_DIR = Path("/work/shared/data/mnist")


def digit_like(count: int, offset: int = 0) -> Images:
    """Grey strokes on black, like MNIST digits: a bar, a crossbar and a diagonal, shifted per image."""
    images = np.zeros((count, 28, 28, 1), dtype=np.uint8)
    for index in range(count):
        shift = (index + offset) % 4
        images[index, 6 + shift : 22 + shift, 12 + shift : 15 + shift] = 255
        images[index, 8 + shift : 10 + shift, 8:20] = 200
        for step in range(10):
            images[index, 10 + step, 6 + step : 8 + step] = 160 + 8 * step
    return images


def flat(value: int, count: int = 2) -> Images:
    return np.full((count, 28, 28, 1), value, dtype=np.uint8)


def corrupt(images: Images, name: str, seed: int = 0, **kwargs: Any) -> Images:
    return corrupt_images(images, name, CORRUPTION_SEVERITIES[name][0], seed=seed, **kwargs)


def generator(name: str, index: int, seed: int = 0) -> np.random.Generator:
    """The generator image `index` gets (the module's documented seeding)."""
    entropy = [seed, NAMES.index(name), CORRUPTION_SEVERITIES[name][0], index]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def as_stored(values: npt.NDArray[Any]) -> Images:
    """The reference's float32 output as its notebook stores it."""
    return np.round(np.asarray(values).astype(np.float32)).astype(np.uint8)


def global_state() -> tuple[Any, ...]:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return name, keys.tobytes(), position, has_gauss, gauss


def test_suite_constants_follow_the_reference() -> None:
    assert SUITE_NAME == "mnist-c" and IMPLEMENTATION_VERSION >= 1
    assert {name: levels[0] for name, levels in CORRUPTION_SEVERITIES.items()} == REFERENCE_DEFAULTS
    assert list(CORRUPTION_SEVERITIES) == list(REFERENCE_DEFAULTS)  # the reference's order
    assert all(len(levels) == 1 for levels in CORRUPTION_SEVERITIES.values())
    assert set(SEVERITY_LEVELS) == set(NAMES)
    for name, levels in SEVERITY_LEVELS.items():
        without_severity = name in {"stripe", "dotted_line", "zigzag", "canny_edges"}
        assert levels == ((1,) if without_severity else (1, 2, 3, 4, 5))
        assert CORRUPTION_SEVERITIES[name][0] in levels


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str) -> None:
    images = digit_like(5)
    before = images.copy()
    rng_state = global_state()
    out = corrupt(images, name, seed=3)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(images, before), "the input must not be modified"
    assert global_state() == rng_state, "NumPy's global generator must not be used"
    assert not np.array_equal(out, images)
    assert np.array_equal(out, corrupt(images, name, seed=3))
    # Deterministic corruptions ignore the seed; random ones must not.
    assert np.array_equal(out, corrupt(images, name, seed=4)) == (name in DETERMINISTIC)
    # An image's output depends on its own pixels and index only, not on its batch.
    others = images.copy()
    others[1:] = digit_like(4, offset=1)[:, ::-1]
    assert np.array_equal(corrupt(others, name, seed=3)[0], out[0])
    assert np.array_equal(corrupt(images[2:], name, seed=3, first_index=2), out[2:])
    assert corrupt(images[:0], name).shape == (0, 28, 28, 1)


@pytest.mark.parametrize("name", NAMES)
def test_every_reference_level_runs(name: str) -> None:
    images = digit_like(2)
    outputs = [corrupt_images(images, name, level, seed=0) for level in SEVERITY_LEVELS[name]]
    for out in outputs:
        assert out.shape == images.shape and out.dtype == np.uint8
    if name not in DETERMINISTIC and len(outputs) > 1:
        assert len({out.tobytes() for out in outputs}) == len(outputs)


def test_shot_noise_is_poisson_with_three_photons() -> None:
    assert np.array_equal(corrupt(flat(0), "shot_noise"), flat(0))  # Poisson(0) is 0
    out = corrupt(flat(128, count=4), "shot_noise")
    # Poisson(3x) / 3 at severity 5: only k/3 for whole k, clipped to 1.
    assert set(np.unique(out)) <= {0, 85, 170, 255}
    assert abs(out.mean() - 128) < 12


def test_impulse_noise_flips_17_percent_to_black_or_white() -> None:
    images = flat(128, count=4)
    out = corrupt(images, "impulse_noise")
    changed = out != images
    assert set(np.unique(out[changed])) == {0, 255}
    assert 0.14 < changed.mean() < 0.20
    assert 0.4 < (out[changed] == 255).mean() < 0.6


def glass_blur_reference(image: Images, rng: np.random.Generator) -> npt.NDArray[Any]:
    """The reference's glass_blur at severity 1, loop for loop, with the module's draws."""
    sigma, reach, passes = 0.7, 1, 2
    x = np.uint8(gaussian(image / 255.0, sigma=sigma, channel_axis=-1) * 255)  # multichannel=True
    sites = range(28 - reach, reach, -1)
    steps = passes * len(sites) ** 2
    swap = rng.random(steps) < 0.5
    shifts = rng.integers(-reach, reach, size=(steps, 2))
    step = 0
    for _ in range(passes):
        for h in sites:
            for w in sites:
                if swap[step]:
                    dx, dy = shifts[step]
                    x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
                step += 1
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def test_glass_blur_equals_the_reference_loop() -> None:
    images = digit_like(3)
    out = corrupt(images, "glass_blur")
    for index in range(len(images)):
        expected = as_stored(glass_blur_reference(images[index, :, :, 0], generator("glass_blur", index)))
        assert np.array_equal(out[index, :, :, 0], expected)


def test_glass_blur_blurs_vertically_only() -> None:
    # The reference's gaussian(..., multichannel=True) on a 2-D image leaves rows unblurred: a
    # horizontal line spreads up and down; columns far from it stay black.
    images = np.zeros((1, 28, 28, 1), dtype=np.uint8)
    images[0, 14, 10:18] = 255
    out = corrupt(images, "glass_blur")[0, :, :, 0]
    assert out[:, :6].max() == 0 and out[:, 22:].max() == 0
    assert out[12:17].sum() > 0.9 * out.sum()


def motion_blur_reference(image: Images, angle: float) -> npt.NDArray[Any]:
    """ImageMagick's MotionBlurImage (radius 10, sigma 3), pixel by pixel."""
    width = 21
    kernel = [np.exp(-(i * i) / (2.0 * 3.0 * 3.0)) for i in range(width)]
    kernel = [k / sum(kernel) for k in kernel]
    point_x, point_y = width * np.sin(np.pi * angle / 180), width * np.cos(np.pi * angle / 180)
    hyp = np.hypot(point_x, point_y)
    offsets = [
        (int(np.ceil(i * point_y / hyp - 0.5)), int(np.ceil(i * point_x / hyp - 0.5))) for i in range(width)
    ]
    out = np.zeros((28, 28))
    for y in range(28):
        for x in range(28):
            out[y, x] = sum(
                k * float(image[min(max(y + oy, 0), 27), min(max(x + ox, 0), 27)])
                for k, (ox, oy) in zip(kernel, offsets, strict=True)
            )
    return np.floor(out + 0.5)


def test_motion_blur_follows_imagemagick() -> None:
    images = digit_like(2)
    out = corrupt(images, "motion_blur")
    for index in range(len(images)):
        angle = generator("motion_blur", index).uniform(-45, 45)
        expected = motion_blur_reference(images[index, :, :, 0], angle)
        difference = np.abs(out[index, :, :, 0].astype(int) - expected)
        assert difference.max() <= 1 and (difference == 0).mean() > 0.98  # Q16 rounding aside
    assert abs(float(out.mean()) - float(images.mean())) < 3  # a normalised kernel keeps the mass


def old_skimage_affine(rotation: float = 0.0, shear: float = 0.0, scale: float = 1.0) -> npt.NDArray[Any]:
    """AffineTransform's 2x2 part in the scikit-image the reference ran (shear as sin/cos)."""
    return np.array(
        [
            [scale * np.cos(rotation), -scale * np.sin(rotation + shear)],
            [scale * np.sin(rotation), scale * np.cos(rotation + shear)],
        ]
    )


def reference_warp(
    image: Images, linear: npt.NDArray[Any], translation: tuple[float, float] | None
) -> Images:
    (a1, a2), (b1, b2) = linear
    if translation is None:  # the reference's translation keeping (13.5, 13.5) fixed
        translation = (13.5 * (1 - a1 - a2), 13.5 * (1 - b1 - b2))
    matrix = np.array([[a1, a2, translation[0]], [b1, b2, translation[1]], [0, 0, 1]])
    warped = transform.warp(image / 255.0, matrix)
    return as_stored(np.clip(warped, 0, 1) * 255.0)


GEOMETRY_CANDIDATES = {
    "shear": [(old_skimage_affine(shear=sign * 0.4), None) for sign in (-1, 1)],
    "rotate": [(old_skimage_affine(rotation=sign * 0.4), None) for sign in (-1, 1)],
    "scale": [(old_skimage_affine(scale=1 / 0.7), None)],
    "translate": [(np.eye(2), (3.0 * sx, 3.0 * sy)) for sx in (-1, 1) for sy in (-1, 1)],
}


@pytest.mark.parametrize("name", list(GEOMETRY_CANDIDATES))
def test_geometry_equals_scikit_image_warp(name: str) -> None:
    images = digit_like(6)
    out = corrupt(images, name)
    for index in range(len(images)):
        image = images[index, :, :, 0]
        matches = [
            np.array_equal(out[index, :, :, 0], reference_warp(image, linear, translation))
            for linear, translation in GEOMETRY_CANDIDATES[name]
        ]
        assert sum(matches) == 1, f"{name} image {index} matches none of the reference's transforms"
        assert not np.array_equal(out[index], images[index])  # the mass moved


def test_translate_moves_the_centre_of_mass_by_three_pixels() -> None:
    images = digit_like(4)
    out = corrupt(images, "translate")
    for before, after in zip(images, out, strict=True):
        shift = np.subtract(ndimage.center_of_mass(after[:, :, 0]), ndimage.center_of_mass(before[:, :, 0]))
        assert np.allclose(np.abs(shift), 3.0)


def test_scale_shrinks_the_digit_to_seventy_percent() -> None:
    images = digit_like(2)
    out = corrupt(images, "scale")
    ratio = out.astype(float).sum() / images.astype(float).sum()
    assert 0.7**2 - 0.06 < ratio < 0.7**2 + 0.06


def test_brightness_equals_the_reference_hsv_round_trip() -> None:
    images = digit_like(2)
    out = corrupt(images, "brightness")
    for index in range(len(images)):
        hsv = color.rgb2hsv(color.gray2rgb(images[index, :, :, 0] / 255.0))
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + 0.5, 0, 1)
        grey = color.rgb2gray(color.hsv2rgb(hsv))
        assert np.array_equal(out[index, :, :, 0], as_stored(np.clip(grey, 0, 1) * 255))
    assert set(np.unique(out[images == 0])) == {128}  # black + 0.5 of the range
    assert out.mean() > images.mean() + 100


def test_stripe_inverts_seven_columns_on_each_side() -> None:
    images = digit_like(2)
    out = corrupt(images, "stripe")
    assert np.array_equal(out[:, :, :7], 255 - images[:, :, :7])
    assert np.array_equal(out[:, :, 21:], 255 - images[:, :, 21:])
    assert np.array_equal(out[:, :, 7:21], images[:, :, 7:21])


def test_fog_adds_scaled_plasma() -> None:
    assert np.array_equal(corrupt(flat(0), "fog"), flat(0))  # scaled by max / (max + 3): black stays
    images = digit_like(4)
    out = corrupt(images, "fog")
    # (x + 3p) / 4 with p in [0, 1]: background at most 3/4, full strokes at least 1/4.
    assert out[images == 0].max() <= 192 and out[images == 0].mean() > 20
    assert out[images == 255].min() >= 63
    assert len(np.unique(out[images == 0])) > 20  # a smooth texture, not a constant
    # Same seed and index, so the same plasma: a white pixel (x = 1) adds 1 / (1 + 3) of the range.
    erased = images.copy()
    erased[0, 10:12] = 0
    erased[0, 0, 0] = 255  # keeps max = 1, so both are scaled by 1 / (1 + 3)
    white = (images[0] == 255) & (erased[0] == 0)
    gap = corrupt(images[:1], "fog").astype(int) - corrupt(erased[:1], "fog")
    assert white.any() and set(np.unique(gap[0][white])) <= {63, 64, 65}


def test_spatter_paints_mud_of_grey_63() -> None:
    black = corrupt(flat(0, count=4), "spatter")
    mud = black[black > 0]
    assert mud.size > 0 and mud.min() >= 50 and mud.max() <= 63  # 63·m with m in [0.8, 1]
    white = corrupt(flat(255, count=4), "spatter")
    stained = white[white < 255]
    assert stained.size > 0 and stained.min() >= 63 and stained.max() <= 102  # 255 - 192·m


def test_dotted_line_adds_dashes_two_pixels_long() -> None:
    images = digit_like(6)
    out = corrupt(images, "dotted_line")
    assert (out >= images).all()
    changed_cols = np.nonzero((out != images).any(axis=(0, 1, 3)))[0]
    assert set(changed_cols) <= {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26}
    on_black = corrupt(flat(0, count=4), "dotted_line")
    assert (on_black.max(axis=(1, 2, 3)) > 200).all()  # a sloped line seldom crosses a pixel's centre
    assert ((on_black > 0).sum(axis=(1, 2, 3)) >= 13).all()  # at least one bright pixel per dash column


def test_zigzag_adds_a_bright_zigzag() -> None:
    images = digit_like(4)
    out = corrupt(images, "zigzag")
    assert (out >= images).all()
    on_black = corrupt(flat(0, count=4), "zigzag")
    for image in on_black[:, :, :, 0]:
        lit_cols = np.nonzero(image.max(axis=0) > 128)[0]
        assert image.max() == 255 and lit_cols.min() <= 3 and lit_cols.max() >= 24  # columns 2 to 25
        assert np.ptp(np.nonzero(image > 128)[0]) >= 3  # it zigzags, not a flat line


def test_canny_edges_are_binary_outlines() -> None:
    images = np.zeros((1, 28, 28, 1), dtype=np.uint8)
    images[0, 8:20, 8:20] = 255
    out = corrupt(images, "canny_edges")
    assert set(np.unique(out)) == {0, 255}
    assert np.array_equal(out[0, :, :, 0], feature.canny(images[0, :, :, 0] / 255.0).astype(np.uint8) * 255)
    assert out[0, 11:17, 11:17].max() == 0  # the inside of the square has no edge
    assert out[0, 5:23, 5:23].sum() == out.sum()  # every edge is near the square's border


@pytest.mark.parametrize(
    ("images", "name", "severity", "seed", "message"),
    [
        (digit_like(1).astype(np.float32), "stripe", 1, 0, "uint8"),
        (np.zeros((1, 28, 28, 3), np.uint8), "stripe", 1, 0, "shape"),
        (np.zeros((1, 32, 32, 1), np.uint8), "stripe", 1, 0, "shape"),
        (np.zeros((28, 28, 1), np.uint8), "stripe", 1, 0, "shape"),
        (np.zeros((1, 28, 28), np.uint8), "stripe", 1, 0, "shape"),
        (digit_like(1), "gaussian_blur", 1, 0, "unknown"),
        (digit_like(1), "shot_noise", 0, 0, "severity"),
        (digit_like(1), "shot_noise", 6, 0, "severity"),
        (digit_like(1), "stripe", 2, 0, "severity"),
        (digit_like(1), "shot_noise", 5, -1, "seed"),
    ],
)
def test_bad_input_is_refused(images: Any, name: str, severity: int, seed: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        corrupt_images(images, name, severity, seed=seed)


def read_mnist_images(path: Path, count: int) -> Images:
    with gzip.open(path, "rb") as stream:
        header = stream.read(16)
        assert int.from_bytes(header[:4], "big") == 2051, "not an idx3 image file"
        pixels = np.frombuffer(stream.read(count * 28 * 28), dtype=np.uint8)
    return pixels.reshape(count, 28, 28, 1).copy()


def test_real_mnist_digits() -> None:
    path = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"real MNIST not found at {path}; the synthetic digits cover the same checks")
    digits = read_mnist_images(path, 16)
    for name in NAMES:
        out = corrupt(digits, name)
        assert np.abs(out.astype(int) - digits).mean() > 1.0, name
    edges = corrupt(digits, "canny_edges")[:, :, :, 0] > 0
    near_strokes = ndimage.binary_dilation(digits[:, :, :, 0] > 64, iterations=2, axes=(1, 2))
    assert (edges <= near_strokes).mean() > 0.99  # Canny outlines the strokes, nothing else
    assert mnist_c.SUITE_NAME == SUITE_NAME
