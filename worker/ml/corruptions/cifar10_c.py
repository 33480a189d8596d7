"""CIFAR-10-C: the 15 common corruptions x 5 severities with CIFAR-10-C's own parameters.

A port of `ImageNet-C/create_c/make_cifar_c.py` in hendrycks/robustness (Hendrycks & Dietterich,
ICLR 2019), the script that made CIFAR-10-C. The per-severity constants, the float arithmetic (float64
where the reference divides a uint8 array by 255., float32 where it casts) and the final conversion are
the reference's: every corruption ends in `np.uint8(...)` of values clipped to [0, 255], which
*truncates* (254.99 -> 254). The reference feeds each image through torchvision's ToTensor/ToPILImage
first; that round trip is exact for uint8 pixels, so the uint8 array is used directly.

Differences from the reference, and why:

- Randomness. The reference draws from NumPy's global generator. Here every image has its own
  `np.random.Generator` seeded from `SeedSequence([seed, name_index, severity, image_index])`, so an
  image's output does not depend on the rest of the batch and the global generator is never touched (no
  library call used here needs it, so there is nothing to save and restore). The draws have the
  reference's shapes, distributions and order, but not its bit stream, so outputs match CIFAR-10-C in
  distribution, not pixel for pixel.
- impulse_noise. The reference calls `skimage.util.random_noise(mode='s&p', amount=c)`; the s&p rule of
  the 2018 scikit-image it ran on is written out here (each value, per channel, is hit with probability
  c; a hit is salt (1) or pepper (0) with probability 1/2 each) so the output does not change with
  scikit-image's internal use of its generator.
- motion_blur and snow. The reference blurs with ImageMagick (Wand's MagickMotionBlurImage), which is not
  available here. `_motion_blur` re-implements it in NumPy the way imagecorruptions-imaug's
  `_motion_blur` does: ImageMagick's kernel (width 2·radius + 1, one-sided Gaussian weights normalised to
  1), its offsets `ceil(i·sin/cos(angle) - 0.5)` and its edge virtual pixels. ImageMagick writes 8-bit
  PNG, rounding half up, so the blurred values are rounded (`floor(v + 0.5)`) where the reference's PNG
  round trip rounds, and snow's layer is truncated to uint8 before the blur as the reference's
  `astype(np.uint8)` does. ImageMagick's Q16 intermediate quantum is not modelled (at most one grey level
  apart, and only at ties).
- glass_blur. The reference's "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` acts on NumPy views, so it
  copies rather than swaps: x[h, w] takes x[h', w'] and x[h', w'] keeps its value (numpy/numpy#14428).
  That behaviour made CIFAR-10-C and is kept. With CIFAR's max_delta = 1 every offset is in {-1, 0}, so
  the source pixel (h', w') comes no later than (h, w) in the reference's bottom-right-to-top-left scan
  and has not been written yet in that pass: each pass is therefore exactly one vectorised gather from
  the pass's input (tested against the literal loop), instead of 900 Python-level steps per pass.
- frost. The frost pictures are the frost1.png ... frost6.jpg that imagecorruptions-imaug ships (taken
  from the reference's repository; not compared byte for byte here), read from the installed package
  without importing it (no download). As in the reference, only the first five are ever picked
  (`randint(5)`), and each is shrunk to a fifth with cv2.resize before the random 32x32 crop.
- Library versions. The reference ran on 2018 SciPy, scikit-image, OpenCV and Pillow; this module calls
  the installed ones (scipy.ndimage.gaussian_filter with scikit-image's `gaussian` defaults, which is what
  `skimage.filters.gaussian` calls; scikit-image's rgb2hsv/hsv2rgb; OpenCV's filter2D, warpAffine,
  GaussianBlur and resize; Pillow's BOX resize and JPEG codec). Where those changed since, today's
  behaviour is what you get: e.g. SciPy 1.6 reworked ndimage's boundary modes for interpolation, which
  elastic_transform's map_coordinates(mode='reflect') meets near the border; JPEG output depends on the
  libjpeg build. With the same random draws the port matches a transcription of the reference run on
  today's libraries bit for bit (checked on 200 CIFAR-10 test images x 5 severities for all but
  motion_blur and snow's ImageMagick step).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import zoom as scipy_zoom
from skimage.color import hsv2rgb, rgb2hsv

from aqpl.corruption_names import CORRUPTION_NAMES
from aqpl.corruption_names import CORRUPTION_SEVERITIES as LEVELS

SUITE_NAME = "cifar10-c"
IMPLEMENTATION_VERSION = 1  # bump when outputs change (it keys the cache)

_SIDE = 32  # CIFAR's image side: the reference hard-codes it (plasma map, glass scan, reshapes)
# CIFAR-10-C's 15 names are ImageNet-C's common corruptions, in the same order, each at severities 1..5.
CORRUPTION_SEVERITIES: dict[str, tuple[int, ...]] = {name: LEVELS for name in CORRUPTION_NAMES}
_NAMES = tuple(CORRUPTION_SEVERITIES)

Uint8Image = npt.NDArray[np.uint8]
Float64Array = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# ---- The reference's per-severity parameters (index = severity - 1), with its units ----
# σ of N(0, σ²) added to pixels in [0, 1].
GAUSSIAN_SEVERITIES: tuple[float, ...] = (0.04, 0.06, 0.08, 0.09, 0.10)
# Poisson rate per unit of pixel value: lower is noisier.
_SHOT_RATE = (500, 250, 100, 75, 50)
# Fraction of values (per channel) replaced by salt or pepper.
_IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
# (disk radius in pixels, σ of the 3x3 Gaussian that antialiases the disk).
_DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))
# (Gaussian σ in pixels, max_delta of the local shuffle, shuffle passes). max_delta must stay 1: the
# vectorised shuffle (`_shuffle_pass`) equals the reference's loop only then.
_GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
# (ImageMagick radius in pixels, σ in pixels); the angle is uniform in [-45°, 45°).
_MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
# Zoom factors averaged with the image (np.arange, as the reference writes them: 1.06 is included).
_ZOOM = (
    np.arange(1, 1.06, 0.01),
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.01),
    np.arange(1, 1.26, 0.01),
)
# (flake mean, flake σ, zoom, threshold, blur radius, blur σ, image weight); angle uniform in [-135°, -45°).
_SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# (image weight, frost weight).
_FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
_FROST_PICKED = 5  # the reference's randint(5): frost6.jpg is listed but never chosen
_FROST_SCALE = 0.2  # the frost pictures are shrunk to a fifth before the 32x32 crop
# (fog strength, plasma wibble decay: lower decay keeps more fine-scale fog).
_FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
# Added to HSV value (V in [0, 1]).
_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
# Factor on each channel's deviation from its mean.
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# (displacement scale α, displacement smoothing σ, affine jitter), all in pixels of a 32-pixel image.
_ELASTIC = (
    (_SIDE * 0, _SIDE * 0, _SIDE * 0.08),
    (_SIDE * 0.05, _SIDE * 0.2, _SIDE * 0.07),
    (_SIDE * 0.08, _SIDE * 0.06, _SIDE * 0.06),
    (_SIDE * 0.1, _SIDE * 0.04, _SIDE * 0.05),
    (_SIDE * 0.1, _SIDE * 0.03, _SIDE * 0.03),
)
# Side of the BOX-downsampled image, as a fraction of 32 (then int(): 30, 28, 27, 24, 20 pixels).
_PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
# Pillow JPEG quality.
_JPEG_QUALITY = (80, 65, 58, 50, 40)

# scikit-image's `gaussian` defaults, which the reference relies on.
_SKIMAGE_GAUSSIAN_MODE = "nearest"
_SKIMAGE_GAUSSIAN_TRUNCATE = 4.0


def corrupt_images(
    images: npt.NDArray[np.uint8], name: str, severity: int, *, seed: int
) -> npt.NDArray[np.uint8]:
    """uint8 (N, 32, 32, 3) in -> uint8 (N, 32, 32, 3) out."""
    if name not in CORRUPTION_SEVERITIES:
        raise ValueError(f"unknown CIFAR-10-C corruption {name!r} (expected one of {', '.join(_NAMES)})")
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[1:] != (_SIDE, _SIDE, 3)
    ):
        described = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise ValueError(f"expected uint8 images of shape (N, 32, 32, 3), got {described}")
    corruption = _CORRUPTIONS[name]
    name_index = _NAMES.index(name)
    corrupted = np.empty_like(images)
    for index in range(len(images)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, name_index, int(severity), index]))
        corrupted[index] = corruption(images[index], int(severity) - 1, rng)
    return corrupted


# ---- Helpers ----


def _saved(values: npt.NDArray[Any]) -> Uint8Image:
    """The reference's `np.uint8(corruption(img))`: truncation of values already clipped to [0, 255]."""
    return values.astype(np.uint8)


def _skimage_gaussian(image: Float64Array, sigma: float, *, multichannel: bool) -> Float64Array:
    """`skimage.filters.gaussian(image, sigma, multichannel=...)` on a float64 image."""
    sigmas = (sigma, sigma, 0.0) if multichannel else (sigma, sigma)
    blurred: Float64Array = gaussian_filter(
        image, sigmas, mode=_SKIMAGE_GAUSSIAN_MODE, truncate=_SKIMAGE_GAUSSIAN_TRUNCATE
    )
    return blurred


@functools.cache
def _disk(radius: float, alias_blur: float) -> Float32Array:
    """The reference's `disk`: a normalised aliased disk on a 17x17 grid, antialiased by a 3x3 Gaussian."""
    # Every CIFAR radius is <= 8, the reference's branch with the fixed 17x17 grid and 3x3 blur.
    grid = np.arange(-8, 8 + 1)
    xs, ys = np.meshgrid(grid, grid)
    aliased = np.array((xs**2 + ys**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    return np.asarray(cv2.GaussianBlur(aliased, ksize=(3, 3), sigmaX=alias_blur), dtype=np.float32)


def _clipped_zoom(image: npt.NDArray[Any], zoom_factor: float) -> npt.NDArray[Any]:
    """The reference's (CIFAR) clipped_zoom: zoom the centre crop bilinearly, trim back to the input side."""
    side = image.shape[0]
    crop = int(np.ceil(side / zoom_factor))
    top = (side - crop) // 2
    zoomed: npt.NDArray[Any] = scipy_zoom(
        image[top : top + crop, top : top + crop], (zoom_factor, zoom_factor, 1), order=1
    )
    trim_top = (zoomed.shape[0] - side) // 2
    return zoomed[trim_top : trim_top + side, trim_top : trim_top + side]


def _motion_blur(image: Float64Array, radius: int, sigma: float, angle: float) -> Float64Array:
    """ImageMagick's MotionBlurImage (edge virtual pixels) in NumPy, as imagecorruptions-imaug ports it.

    Each output pixel is a weighted sum of pixels behind it along `angle` (degrees); weight i is
    exp(-i²/2σ²), normalised, for i in 0..2·radius.
    """
    width = 2 * radius + 1  # ImageMagick's GetOptimalKernelWidth1D for a positive radius
    weights = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    height, breadth = image.shape[:2]
    rows, cols = np.arange(height), np.arange(breadth)
    blurred = np.zeros(image.shape, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(i * point[0] / hypot - 0.5)
        dx = -math.ceil(i * point[1] / hypot - 0.5)
        if abs(dy) >= height or abs(dx) >= breadth:
            break  # the blur path left the image (never for CIFAR's radii, kept for parity)
        # Shift by (dy, dx), repeating the edge: ImageMagick's default "edge" virtual pixels.
        source_rows = np.clip(rows - dy, 0, height - 1)
        source_cols = np.clip(cols - dx, 0, breadth - 1)
        blurred += weights[i] * image[source_rows][:, source_cols]
    return blurred


def _round_half_up(values: Float64Array) -> Float64Array:
    """ImageMagick's float -> 8-bit conversion when it writes PNG: round half up."""
    return np.floor(values + 0.5)


def _plasma_fractal(rng: np.random.Generator, wibble_decay: float, mapsize: int = _SIDE) -> Float64Array:
    """The reference's diamond-square height map in [0, 1], drawing from `rng` in the reference's order."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize = mapsize
    wibble = 100.0

    def wibbled_mean(array: Float64Array) -> Float64Array:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        # Squares: the centre of each square of corners gets their mean plus a wibble.
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        square_sum = corners + np.roll(corners, shift=-1, axis=0)
        square_sum += np.roll(square_sum, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(square_sum)
        # Diamonds: the edge midpoints get the mean of their four diamond neighbours plus a wibble.
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        # Summed in the reference's grouping, (a + b) + (c + d), so the floats agree bit for bit.
        left_sum = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(left_sum)
        top_sum = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbled_mean(top_sum)
        stepsize //= 2
        wibble /= wibble_decay
    maparray -= maparray.min()
    normalised: Float64Array = maparray / maparray.max()
    return normalised


@functools.cache
def _frost_pictures() -> tuple[Uint8Image, ...]:
    """The reference's frost pictures (BGR, as cv2.imread gives them), shrunk to a fifth; read once."""
    # find_spec locates the package without importing it (its __init__ pulls in numba).
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the frost corruption needs the frost pictures of imagecorruptions-imaug")
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    pictures = []
    for file_name in _FROST_FILES:
        picture = cv2.imread(str(folder / file_name))
        if picture is None:
            raise RuntimeError(f"cannot read frost picture {folder / file_name}")
        shrunk = np.asarray(cv2.resize(picture, (0, 0), fx=_FROST_SCALE, fy=_FROST_SCALE), dtype=np.uint8)
        shrunk.flags.writeable = False
        pictures.append(shrunk)
    return tuple(pictures)


def _shuffle_pass(image: Uint8Image, offsets: npt.NDArray[np.int64]) -> Uint8Image:
    """One pass of the reference's glass-blur pixel loop with max_delta 1, as one gather.

    `offsets[k, l] = (dx, dy)` is the draw the reference makes at h = 31 - k, w = 31 - l (its loop runs
    h, w = 31 .. 2 downwards). The reference's tuple "swap" on views sets x[h, w] = x[h + dy, w + dx] and
    leaves the source alone; with dx, dy in {-1, 0} the source is never written earlier in the pass, so
    every pixel reads the pass's input.
    """
    ascending = offsets[::-1, ::-1]  # row k now belongs to h = 2 + k, column l to w = 2 + l
    inner = np.arange(2, _SIDE)
    source_rows = inner[:, np.newaxis] + ascending[..., 1]
    source_cols = inner[np.newaxis, :] + ascending[..., 0]
    shuffled = image.copy()
    shuffled[2:, 2:] = image[source_rows, source_cols]
    return shuffled


# ---- The corruptions: (uint8 32x32x3 image, severity - 1, generator) -> uint8 32x32x3 ----


def _gaussian_noise(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    c = GAUSSIAN_SEVERITIES[level]
    x = image / 255.0
    return _saved(np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255)


def _shot_noise(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    c = _SHOT_RATE[level]
    x = image / 255.0
    return _saved(np.clip(rng.poisson(x * c) / c, 0, 1) * 255)


def _impulse_noise(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    amount = _IMPULSE_AMOUNT[level]
    x = image / 255.0
    # scikit-image's s&p (salt_vs_pepper = 0.5): np.random.choice([True, False], p=[p, 1-p]) is u < p.
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _saved(np.clip(x, 0, 1) * 255)


def _defocus_blur(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    radius, alias_blur = _DEFOCUS[level]
    x = image / 255.0
    kernel = _disk(radius, alias_blur)
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]).transpose((1, 2, 0))
    return _saved(np.clip(channels, 0, 1) * 255)


def _glass_blur(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    sigma, max_delta, passes = _GLASS[level]
    x = _saved(_skimage_gaussian(image / 255.0, sigma, multichannel=True) * 255)
    span = len(range(_SIDE - max_delta, max_delta, -1))  # the reference's 30 rows and columns
    for _ in range(passes):
        # One (dx, dy) per visited pixel, in the reference's visiting order.
        offsets = rng.integers(-max_delta, max_delta, size=(span, span, 2))
        x = _shuffle_pass(x, offsets)
    return _saved(np.clip(_skimage_gaussian(x / 255.0, sigma, multichannel=True), 0, 1) * 255)


def _motion_blur_corruption(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    radius, sigma = _MOTION[level]
    blurred = _motion_blur(image.astype(np.float64), radius, sigma, rng.uniform(-45, 45))
    return _saved(_round_half_up(np.clip(blurred, 0, 255)))


def _zoom_blur(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    factors = _ZOOM[level]
    x = (image / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in factors:
        out += _clipped_zoom(x, float(zoom_factor))
    averaged = (x + out) / (len(factors) + 1)  # float32 throughout, as in the reference
    return _saved(np.clip(averaged, 0, 1) * 255)


def _snow(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    mean, spread, zoom_factor, threshold, radius, sigma, weight = _SNOW[level]
    x = np.asarray(image, dtype=np.float32) / 255.0
    snow_layer = rng.normal(size=x.shape[:2], loc=mean, scale=spread)
    snow_layer = _clipped_zoom(snow_layer[..., np.newaxis], zoom_factor)
    snow_layer[snow_layer < threshold] = 0
    # The reference hands the layer to ImageMagick as an 8-bit grey PNG (truncated) and reads it back.
    layer_u8 = (np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    blurred = _motion_blur(layer_u8.astype(np.float64), radius, sigma, rng.uniform(-135, -45))
    flakes = (_round_half_up(np.clip(blurred, 0, 255)) / 255.0)[..., np.newaxis]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(_SIDE, _SIDE, 1)
    x = weight * x + (1 - weight) * np.maximum(x, grey * 1.5 + 0.5)
    return _saved(np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255)


def _frost(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    image_weight, frost_weight = _FROST[level]
    picture = _frost_pictures()[int(rng.integers(_FROST_PICKED))]
    x_start = int(rng.integers(0, picture.shape[0] - _SIDE))
    y_start = int(rng.integers(0, picture.shape[1] - _SIDE))
    crop = picture[x_start : x_start + _SIDE, y_start : y_start + _SIDE][..., [2, 1, 0]]  # BGR -> RGB
    return _saved(np.clip(image_weight * image + frost_weight * crop, 0, 255))


def _fog(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    strength, wibble_decay = _FOG[level]
    x = image / 255.0
    max_val = x.max()
    x += strength * _plasma_fractal(rng, wibble_decay)[:_SIDE, :_SIDE][..., np.newaxis]
    return _saved(np.clip(x * max_val / (max_val + strength), 0, 1) * 255)


def _brightness(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    c = _BRIGHTNESS[level]
    hsv = rgb2hsv(image / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return _saved(np.clip(hsv2rgb(hsv), 0, 1) * 255)


def _contrast(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    c = _CONTRAST[level]
    x = image / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return _saved(np.clip((x - means) * c + means, 0, 1) * 255)


def _elastic_transform(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    alpha, sigma, affine_jitter = _ELASTIC[level]
    x = np.asarray(image, dtype=np.float32) / 255.0
    shape = x.shape
    shape_size = shape[:2]
    # A random affine: three points near the corners each move by up to `affine_jitter` pixels.
    center_square = np.array(shape_size, dtype=np.float32) // 2
    square_size = min(shape_size) // 3
    pts1 = np.array(
        [
            center_square + square_size,
            [center_square[0] + square_size, center_square[1] - square_size],
            center_square - square_size,
        ],
        dtype=np.float32,
    )
    pts2 = pts1 + rng.uniform(-affine_jitter, affine_jitter, size=pts1.shape).astype(np.float32)
    affine = cv2.getAffineTransform(pts1, pts2)
    warped_affine = np.asarray(
        cv2.warpAffine(x, affine, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101), dtype=np.float32
    )
    # Then a smooth random displacement field.
    dx = (
        gaussian_filter(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    ).astype(np.float32)
    dy = (
        gaussian_filter(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    ).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    xs, ys, zs = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(ys + dy, (-1, 1)), np.reshape(xs + dx, (-1, 1)), np.reshape(zs, (-1, 1))
    warped = map_coordinates(warped_affine, indices, order=1, mode="reflect").reshape(shape)
    return _saved(np.clip(warped, 0, 1) * 255)


def _pixelate(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    small_side = int(_SIDE * _PIXELATE[level])
    picture = Image.fromarray(image).resize((small_side, small_side), Image.Resampling.BOX)
    picture = picture.resize((_SIDE, _SIDE), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.uint8)


def _jpeg_compression(image: Uint8Image, level: int, rng: np.random.Generator) -> Uint8Image:
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, "JPEG", quality=_JPEG_QUALITY[level])
    stream.seek(0)
    with Image.open(stream) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


_CORRUPTIONS: dict[str, Callable[[Uint8Image, int, np.random.Generator], Uint8Image]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_corruption,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
