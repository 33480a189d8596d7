"""`mnist-c`: the 15 corruptions of MNIST-C (Mu & Gilmer 2019), ported from the reference code.

Reference: `corruptions.py` of github.com/google-research/mnist-c, the code that made the published
dataset. MNIST-C uses each corruption at one severity, the default argument of its function there
(`CORRUPTION_SEVERITIES`); the other levels of the reference's per-severity lists are available too
(`SEVERITY_LEVELS`). stripe, dotted_line, zigzag and canny_edges take no severity in the reference,
so they have the single level 1. The arithmetic follows the reference step by step (float64 or
float32 where it uses them, its clips and truncations) and ends like its notebook,
`np.round(x).astype(np.uint8)` (half to even) on the float32 image the reference returns.

Where this port differs from the reference, and why:

- Randomness: the reference draws from NumPy's global generator, one call at a time. Here every
  image has its own `np.random.Generator`, seeded by (seed, corruption index, severity, absolute
  image index), so an image's output depends on neither the batch around it nor how work is split.
  Draws come from the same distributions, made up front in arrays (glass_blur draws a shift for
  every site and uses it where the coin says swap; the reference draws it only then). The values
  differ from the published files, which cannot be reproduced without the reference's global stream.
- motion_blur: the reference runs ImageMagick's MotionBlurImage through Wand on a PNG. Here is the
  same algorithm in NumPy: a one-sided Gaussian kernel of width 2·ceil(radius)+1, exp(-i²/2σ²)
  normalised, sampled at offsets (ceil(i·cos a - 0.5), ceil(i·sin a - 0.5)) with edge pixels
  repeated beyond the border (ImageMagick's default virtual pixels), then rounded the way a Q16
  ImageMagick build stores the result and writes an 8-bit PNG. An HDRI build can differ by one grey
  level on rare exact halves.
- shear: scikit-image's `AffineTransform(shear=c)` was [[1, -sin c], [0, cos c]] when the reference
  was written; later versions (the installed one among them) use tan c. The matrix is built here as
  the reference's version built it. All four geometric corruptions use a batched copy of
  scikit-image's bilinear `warp` (constant 0 outside, output clipped to the input's range).
- glass_blur keeps a quirk of the reference: `gaussian(x, multichannel=True)` on a 2-D image takes
  the columns for channels, so both of its blurs act along the vertical axis only. Its per-pixel
  swap loop runs here over the whole batch at once, in the same site order, so it stays sequential
  per image and gives what the loop gives with the same draws.
- dotted_line and zigzag divide with Python 3's `/`. Under Python 2 (the notebook's kernel) the
  integer slopes would floor to 0 or -1; the reference's intent is clearly the true slope.
- canny_edges and the Gaussian blurs call scikit-image and SciPy as the reference does; the Canny
  implementation of today's scikit-image may differ in detail from that of 2019.
- brightness goes through grey -> RGB -> HSV -> RGB -> grey in the reference; for grey pixels that is
  exactly min(x + c, 1) weighted by rgb2gray's coefficients, which is computed directly.
- Input: uint8 (N, 28, 28, 1) only, as the reference is written for 28x28 grey digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage import feature

SUITE_NAME = "mnist-c"
# name -> the severities this suite uses, in the reference's order: its function's default argument.
CORRUPTION_SEVERITIES: dict[str, tuple[int, ...]] = {
    "shot_noise": (5,),
    "impulse_noise": (4,),
    "glass_blur": (1,),
    "motion_blur": (1,),
    "shear": (2,),
    "scale": (3,),
    "rotate": (2,),
    "brightness": (5,),
    "translate": (3,),
    "stripe": (1,),  # no severity in the reference: one level
    "fog": (5,),
    "spatter": (4,),
    "dotted_line": (1,),  # no severity in the reference: one level
    "zigzag": (1,),  # no severity in the reference: one level
    "canny_edges": (1,),  # no severity in the reference: one level
}
IMPLEMENTATION_VERSION = 1  # bump when outputs change (it keys the cache)

_SIDE = 28  # the reference hard-codes 28x28 images (line drawing, stripes, the 13.5 centre)
_CENTRE = 13.5  # pixel coordinates of the image centre, kept fixed by shear, rotate and scale
_CHUNK = 512  # images per batch step: bounds memory (glass_blur's swap plan, the warp's gathers)
_FOG_CHUNK = 32  # images per plasma batch: each needs a 256x256 float64 map (0.5 MiB)

_Images = npt.NDArray[np.uint8]
_Floats = npt.NDArray[np.floating[Any]]
_F64 = npt.NDArray[np.float64]
_Rngs = Sequence[np.random.Generator]

# Per-severity parameters, copied from the reference (index = severity - 1). Intensities in [0, 1].
# Photons per unit intensity: x' = Poisson(c·x) / c, so small c is strong noise.
_SHOT_NOISE = (60.0, 25.0, 12.0, 5.0, 3.0)
# Fraction of pixels replaced, half by 0 and half by 1 (scikit-image's 's&p' noise).
_IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)
# (Gaussian σ in pixels, swap distance d in pixels: shifts in [-d, d), passes over the image)
_GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
# ImageMagick's (radius, σ) in pixels; the direction is uniform in [-45°, 45°).
_MOTION_BLUR = ((10.0, 3.0), (15.0, 5.0), (15.0, 8.0), (15.0, 12.0), (20.0, 15.0))
_SHEAR = (0.2, 0.4, 0.6, 0.8, 1.0)  # scikit-image shear angle in radians, random sign
_ROTATE = (0.2, 0.4, 0.6, 0.8, 1.0)  # radians (11° to 57°), random sign
# (sx, sy) of the inverse map: the digit shrinks to 0.9 ... 0.5 of its size about the centre.
_SCALE = ((1 / 0.9, 1 / 0.9), (1 / 0.8, 1 / 0.8), (1 / 0.7, 1 / 0.7), (1 / 0.6, 1 / 0.6), (1 / 0.5, 1 / 0.5))
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to the HSV value
_TRANSLATE = (1, 2, 3, 4, 5)  # pixels along each axis, each with a random sign
# (fog strength, plasma fractal's wibble decay: lower is rougher)
_FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
# (mean, std, σ of the first blur, threshold, σ of the second blur, unused colour flag of ImageNet-C)
_SPATTER = (
    (0.65, 0.3, 4.0, 0.69, 0.6, 0),
    (0.65, 0.3, 3.0, 0.68, 0.6, 0),
    (0.65, 0.3, 2.0, 0.68, 0.5, 0),
    (0.65, 0.3, 1.0, 0.65, 1.5, 1),
    (0.67, 0.4, 1.0, 0.65, 1.5, 1),
)
_MUD = 63 / 255.0  # spatter's grey level for mud
_RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray weights (ITU-R 709)
_LINE_REACH = 2.3  # line_from_points: vertical distance in pixels at which a line fades to 0
# The default sigma (1 pixel) and thresholds (0.1, 0.2), as the reference calls it.
_canny = cast(Callable[[npt.NDArray[np.float64]], npt.NDArray[np.bool_]], feature.canny)


def corrupt_images(images: _Images, name: str, severity: int, *, seed: int, first_index: int = 0) -> _Images:
    """uint8 (N, 28, 28, 1) in -> uint8 (N, 28, 28, 1) out: one MNIST-C corruption at one severity.

    Image i is corrupted under its own generator, seeded by (seed, the corruption's index in
    CORRUPTION_SEVERITIES, severity, first_index + i): pass the absolute index of images[0] as
    `first_index` to corrupt a dataset in slices and get the same arrays as in one call.
    """
    _check_arguments(images, name, severity, seed=seed, first_index=first_index)
    corruption = _CORRUPTIONS[name]
    name_index = list(CORRUPTION_SEVERITIES).index(name)
    corrupted = np.empty_like(images)
    for start in range(0, len(images), _CHUNK):
        chunk = images[start : start + _CHUNK, :, :, 0]
        rngs = [
            np.random.default_rng(
                np.random.SeedSequence([int(seed), name_index, severity, int(first_index) + index])
            )
            for index in range(start, start + len(chunk))
        ]
        values = corruption.apply(chunk, severity, rngs)
        corrupted[start : start + len(chunk), :, :, 0] = _to_uint8(values)
    return corrupted


def _check_arguments(images: _Images, name: str, severity: int, *, seed: int, first_index: int) -> None:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.shape[1:] != (_SIDE, _SIDE, 1)
    ):
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(
            f"mnist-c corrupts uint8 grey images of shape (N, {_SIDE}, {_SIDE}, 1), got {dtype} {shape}"
        )
    if name not in _CORRUPTIONS:
        raise ValueError(f"unknown mnist-c corruption {name!r} (expected one of {', '.join(_CORRUPTIONS)})")
    levels = SEVERITY_LEVELS[name]
    if isinstance(severity, bool) or severity not in levels:
        raise ValueError(f"severity of {name} must be one of {levels}, got {severity!r}")
    for label, value in (("seed", seed), ("first_index", first_index)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")


def _to_uint8(values: _Floats) -> _Images:
    """The reference returns float32 in [0, 255]; its notebook stores np.round(x).astype(np.uint8)."""
    as_float32 = np.clip(values, 0.0, 255.0).astype(np.float32)
    return np.round(as_float32).astype(np.uint8)


def _gaussian(images: _Floats, sigma: float, *, rows_only: bool = False) -> _Floats:
    """scikit-image's `gaussian` (mode 'nearest', truncate 4) on each image of an (N, H, W) batch.

    `rows_only` is the reference's `multichannel=True` on a 2-D image: columns count as channels.
    """
    sigmas = (0.0, sigma, 0.0 if rows_only else sigma)  # σ 0 on the batch axis: images stay apart
    blurred: _Floats = ndimage.gaussian_filter(images, sigma=sigmas, mode="nearest", truncate=4.0)
    return blurred


# ---------------------------------------------------------------- noise


def _shot_noise(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    photons = _SHOT_NOISE[severity - 1]
    rate = images / 255.0 * photons
    counts = np.stack([rng.poisson(rate[index]) for index, rng in enumerate(rngs)])
    return (np.clip(counts / photons, 0, 1) * 255).astype(np.float32)


def _impulse_noise(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    amount = _IMPULSE_NOISE[severity - 1]
    noisy = images / 255.0
    for index, rng in enumerate(rngs):
        flipped = rng.random(noisy.shape[1:]) < amount
        salted = rng.random(noisy.shape[1:]) < 0.5  # scikit-image's default salt_vs_pepper
        noisy[index][flipped & salted] = 1.0
        noisy[index][flipped & ~salted] = 0.0  # 0, not -1: the image has no negative values
    return (np.clip(noisy, 0, 1) * 255).astype(np.float32)


# ---------------------------------------------------------------- blur


def _glass_blur(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    sigma, reach, passes = _GLASS_BLUR[severity - 1]
    count = len(images)
    # np.uint8(...) truncates, as in the reference.
    shuffled = (_gaussian(images / 255.0, sigma, rows_only=True) * 255).astype(np.uint8).reshape(count, -1)
    # The reference visits h, then w, from 28 - d down to d + 1, `passes` times.
    sites = np.arange(_SIDE - reach, reach, -1)
    rows, cols = np.meshgrid(sites, sites, indexing="ij")
    own = np.tile((rows * _SIDE + cols).ravel(), passes)
    partners = np.empty((len(own), count), dtype=np.intp)
    for index, rng in enumerate(rngs):
        swap = rng.random(len(own)) < 0.5
        shift = rng.integers(-reach, reach, size=(len(own), 2))  # (dx, dy), upper bound exclusive
        partners[:, index] = own + np.where(swap, shift[:, 1] * _SIDE + shift[:, 0], 0)
    # Swaps chain (a pixel moved at one site can move again at the next), so sites go in order;
    # all images take each step together.
    batch = np.arange(count)
    for site, partner in zip(own, partners, strict=True):
        held = shuffled[:, site].copy()
        shuffled[:, site] = shuffled[batch, partner]
        shuffled[batch, partner] = held
    blurred = _gaussian(shuffled.reshape(images.shape) / 255.0, sigma, rows_only=True)
    return (np.clip(blurred, 0, 1) * 255).astype(np.float32)


def _motion_blur(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    radius, sigma = _MOTION_BLUR[severity - 1]
    # ImageMagick: GetOptimalKernelWidth1D, GetMotionBlurKernel and MotionBlurImage (effect.c).
    width = int(2.0 * math.ceil(radius) + 1.0)
    taps = np.arange(width, dtype=np.float64)
    kernel = np.exp(-(taps * taps) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    kernel /= kernel.sum()
    degrees = np.array([rng.uniform(-45.0, 45.0) for rng in rngs])
    radians = math.pi * degrees / 180.0
    point_x, point_y = width * np.sin(radians), width * np.cos(radians)
    hypot = np.hypot(point_x, point_y)[:, None]
    offset_cols = np.ceil(taps * point_y[:, None] / hypot - 0.5).astype(np.intp)
    offset_rows = np.ceil(taps * point_x[:, None] / hypot - 0.5).astype(np.intp)
    pixels = images.astype(np.float64)
    batch = np.arange(len(images))[:, None, None]
    rows = np.arange(_SIDE)[None, :, None]
    cols = np.arange(_SIDE)[None, None, :]
    blurred = np.zeros(images.shape, dtype=np.float64)
    for tap in range(width):
        # Beyond the border ImageMagick repeats the edge pixel (its default virtual-pixel method).
        source_rows = np.clip(rows + offset_rows[:, tap, None, None], 0, _SIDE - 1)
        source_cols = np.clip(cols + offset_cols[:, tap, None, None], 0, _SIDE - 1)
        blurred += kernel[tap] * pixels[batch, source_rows, source_cols]
    return _imagemagick_8bit(blurred)


def _imagemagick_8bit(values: _F64) -> _F64:
    """What a Q16 ImageMagick stores (ClampToQuantum) and writes to an 8-bit PNG (ScaleQuantumToChar)."""
    quantum = np.floor(np.clip(values * 257.0, 0.0, 65535.0) + 0.5).astype(np.int64)
    return (((quantum + 128) - ((quantum + 128) >> 8)) >> 8).astype(np.float64)


# ---------------------------------------------------------------- geometry


def _skimage_affine(
    *, scale: tuple[float, float] = (1.0, 1.0), rotation: _F64 | float = 0.0, shear: _F64 | float = 0.0
) -> _F64:
    """The 2x2 part of scikit-image's AffineTransform as the reference's version defined it: (N, 2, 2)."""
    sx, sy = scale
    rotation_n, shear_n = np.broadcast_arrays(np.atleast_1d(rotation), np.atleast_1d(shear))
    return np.stack(
        [
            np.stack([sx * np.cos(rotation_n), -sy * np.sin(rotation_n + shear_n)], axis=-1),
            np.stack([sx * np.sin(rotation_n), sy * np.cos(rotation_n + shear_n)], axis=-1),
        ],
        axis=-2,
    ).astype(np.float64)


def _about_centre(linear: _F64) -> _F64:
    """(N, 3, 3) inverse maps with the reference's translation keeping (13.5, 13.5) fixed."""
    a1, a2 = linear[:, 0, 0], linear[:, 0, 1]
    b1, b2 = linear[:, 1, 0], linear[:, 1, 1]
    return _with_translation(linear, _CENTRE * (1 - a1 - a2), _CENTRE * (1 - b1 - b2))


def _with_translation(linear: _F64, tx: _F64, ty: _F64) -> _F64:
    matrices = np.zeros((len(linear), 3, 3))
    matrices[:, :2, :2] = linear
    matrices[:, 0, 2] = tx
    matrices[:, 1, 2] = ty
    matrices[:, 2, 2] = 1.0
    return matrices


def _warp(images: _F64, inverse: _F64) -> _F64:
    """scikit-image's `warp(image, inverse_map)` with its defaults (bilinear, constant 0, clip) per image.

    A batched copy of its `_warp_fast`: each output pixel (r, c) reads the input at
    (x, y) = inverse · (c, r, 1), from the four pixels at floor/ceil, each 0 outside the image.
    """
    count, height, width = images.shape
    out_rows, out_cols = np.meshgrid(
        np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij"
    )
    m = inverse[:, :, :, None, None]
    source_cols = m[:, 0, 0] * out_cols + m[:, 0, 1] * out_rows + m[:, 0, 2]
    source_rows = m[:, 1, 0] * out_cols + m[:, 1, 1] * out_rows + m[:, 1, 2]
    low_rows, low_cols = np.floor(source_rows), np.floor(source_cols)
    high_rows, high_cols = np.ceil(source_rows), np.ceil(source_cols)
    frac_rows, frac_cols = source_rows - low_rows, source_cols - low_cols
    batch = np.arange(count)[:, None, None]

    def pixel(rows: _F64, cols: _F64) -> _F64:
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        safe_rows = np.clip(rows, 0, height - 1).astype(np.intp)
        safe_cols = np.clip(cols, 0, width - 1).astype(np.intp)
        return np.where(inside, images[batch, safe_rows, safe_cols], 0.0)

    top = (1 - frac_cols) * pixel(low_rows, low_cols) + frac_cols * pixel(low_rows, high_cols)
    bottom = (1 - frac_cols) * pixel(high_rows, low_cols) + frac_cols * pixel(high_rows, high_cols)
    warped = (1 - frac_rows) * top + frac_rows * bottom
    # warp(clip=True): clip to the input's range, but keep the fill value 0 where it lies outside it.
    low = images.min(axis=(1, 2), keepdims=True)
    high = images.max(axis=(1, 2), keepdims=True)
    keep_fill = ((low > 0) | (high < 0)) & (warped == 0)
    return np.where(keep_fill, 0.0, np.clip(warped, low, high))


def _random_signs(rngs: _Rngs, size: int) -> _F64:
    return np.array([rng.choice((-1, 1), size=size) for rng in rngs], dtype=np.float64).reshape(-1, size)


def _geometric(images: _Images, inverse: _F64) -> _Floats:
    warped = _warp(images / 255.0, inverse)
    return (np.clip(warped, 0, 1) * 255).astype(np.float32)


def _shear(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    angles = _SHEAR[severity - 1] * _random_signs(rngs, 1)[:, 0]
    return _geometric(images, _about_centre(_skimage_affine(shear=angles)))


def _rotate(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    angles = _ROTATE[severity - 1] * _random_signs(rngs, 1)[:, 0]
    return _geometric(images, _about_centre(_skimage_affine(rotation=angles)))


def _scale(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    linear = np.repeat(_skimage_affine(scale=_SCALE[severity - 1]), len(images), axis=0)
    return _geometric(images, _about_centre(linear))


def _translate(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    shifts = _TRANSLATE[severity - 1] * _random_signs(rngs, 2)
    identity = np.repeat(_skimage_affine(), len(images), axis=0)
    return _geometric(images, _with_translation(identity, shifts[:, 0], shifts[:, 1]))


# ---------------------------------------------------------------- intensity


def _brightness(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    # Grey pixels have hue 0 and saturation 0, so HSV's value is the pixel and hsv2rgb gives it back.
    value = np.clip(images / 255.0 + _BRIGHTNESS[severity - 1], 0, 1)
    grey: _F64 = np.stack([value, value, value], axis=-1) @ _RGB_TO_GREY
    return (np.clip(grey, 0, 1) * 255).astype(np.float32)


def _stripe(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    striped = images.astype(np.float32)
    striped[:, :, :7] = 255.0 - striped[:, :, :7]
    striped[:, :, 21:] = 255.0 - striped[:, :, 21:]
    return striped


# ---------------------------------------------------------------- weather


_PLASMA_SIZE = 256  # the reference's default mapsize; only the 28x28 corner is used, but the whole
# map is made, because the corner's values depend on it (wrap-around) and it sets the normalisation.
_PLASMA_DRAWS = sum(3 * (_PLASMA_SIZE // 2**level) ** 2 for level in range(1, 9))  # 65535 per map


def _fog(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    strength, decay = _FOG[severity - 1]
    pixels = images / 255.0
    fogged = np.empty_like(pixels)
    for start in range(0, len(images), _FOG_CHUNK):
        chunk = pixels[start : start + _FOG_CHUNK]
        uniforms = np.stack([rng.random(_PLASMA_DRAWS) for rng in rngs[start : start + len(chunk)]])
        max_val = chunk.max(axis=(1, 2), keepdims=True)
        foggy = chunk + strength * _plasma_fractal(uniforms, decay)[:, :_SIDE, :_SIDE]
        fogged[start : start + len(chunk)] = np.clip(foggy * max_val / (max_val + strength), 0, 1) * 255
    return fogged.astype(np.float32)


def _plasma_fractal(uniforms: _F64, decay: float) -> _F64:
    """The reference's diamond-square height maps, one per row of `uniforms` (U[0, 1) draws), in [0, 1]."""
    size = _PLASMA_SIZE
    maps = np.empty((len(uniforms), size, size))
    maps[:, 0, 0] = 0
    step = size
    wibble = 100.0
    used = 0

    def wibbled_mean(total: _F64) -> _F64:
        nonlocal used
        count = total[0].size
        draws = uniforms[:, used : used + count].reshape(total.shape)
        used += count
        # np.random.uniform(-w, w) is -w + 2w·U[0, 1).
        return total / 4 + wibble * (-wibble + (wibble - -wibble) * draws)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        square_sum = corners + np.roll(corners, shift=-1, axis=1)
        square_sum += np.roll(square_sum, shift=-1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(square_sum)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        left_sum = centres + np.roll(centres, 1, axis=1) + (corners + np.roll(corners, -1, axis=2))
        maps[:, 0:size:step, half:size:step] = wibbled_mean(left_sum)
        top_sum = centres + np.roll(centres, 1, axis=2) + (corners + np.roll(corners, -1, axis=1))
        maps[:, half:size:step, 0:size:step] = wibbled_mean(top_sum)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    normalised: _F64 = maps / maps.max(axis=(1, 2), keepdims=True)
    return normalised


def _spatter(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    mean, std, sigma, threshold, mud_sigma, _ = _SPATTER[severity - 1]
    pixels = images.astype(np.float32) / np.float32(255.0)
    liquid = np.stack([rng.normal(loc=mean, scale=std, size=images.shape[1:]) for rng in rngs])
    blurred = _gaussian(liquid, sigma)
    blurred[blurred < threshold] = 0
    mud = _gaussian(np.where(blurred > threshold, 1, 0).astype(np.float32), mud_sigma)
    mud[mud < 0.8] = 0
    colour = _MUD * np.ones_like(pixels) * mud
    pixels *= 1 - mud
    return np.clip(pixels + colour, 0, 1) * 255


# ---------------------------------------------------------------- lines


def _line_from_points(c0: _F64, r0: _F64, c1: _F64, r1: _F64) -> _F64:
    """The reference's `line_from_points` for N lines at once: (N,) ends -> (N, 28, 28) in [0, 1].

    Intensity log(1 - d / 2.3) + 1 at vertical distance d from the line, between columns
    floor(c0) and ceil(c1); a vertical segment (c0 == c1) draws nothing.
    """
    c0, r0, c1, r1 = (np.asarray(end, dtype=np.float64)[:, None, None] for end in (c0, r0, c1, r1))
    grid = np.linspace(0, _SIDE - 1, _SIDE)
    cols, rows = grid[None, None, :], grid[None, :, None]
    vertical = c1 == c0
    slope = (r1 - r0) / np.where(vertical, 1.0, c1 - c0)
    dist = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, _LINE_REACH - 1e-10)
    line = np.clip(np.log(1 - dist / _LINE_REACH) + 1, 0, 1)
    # corruption[:, :l] = 0 and corruption[:, r:] = 0, with Python's rules for negative slice bounds.
    left = _slice_bound(np.floor(c0).astype(np.int64))
    right = _slice_bound(np.ceil(c1).astype(np.int64))
    outside = (cols < left) | (cols >= right) | vertical
    return np.where(outside, 0.0, line)


def _slice_bound(bound: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.clip(np.where(bound < 0, bound + _SIDE, bound), 0, _SIDE)


def _dotted_line(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    ends = np.array([rng.integers(0, 27, size=2) for rng in rngs], dtype=np.float64).reshape(-1, 2)
    count = len(images)
    line = _line_from_points(np.zeros(count), ends[:, 0], np.full(count, 27.0), ends[:, 1])
    # The reference blanks columns [0, 2), [4, 6), ... [24, 26): dashes two pixels long.
    line[:, :, (np.arange(_SIDE) // 2) % 2 == 0] = 0
    return (np.clip(images / 255.0 + line, 0, 1) * 255).astype(np.float32)


def _zigzag_points(rng: np.random.Generator) -> tuple[_F64, _F64]:
    """The reference's zigzag corners (columns, rows): a 2-pixel zigzag from column 2 to 25, tilted."""
    length, amplitude = 2.0, 2.0  # the reference's a and b
    c0, c1 = 2, 25
    r0 = int(rng.integers(0, 27))
    r1 = r0 + int(rng.integers(-5, 5))
    theta = math.atan((r1 - r0) / (c1 - c0))
    span = (c1 - c0) / math.cos(theta)
    points = [(0.0, 0.0)]
    r_i = 0.0
    for i in range(int((span - length) // (2 * length)) + 1):
        r_i = (-1) ** i * amplitude
        points.append(((2 * i + 1) * length, r_i))
    max_c = (2 * length) * (span // (2 * length))
    if span != max_c:
        points.append((span, r_i / (2 * (span - max_c))))  # the reference's end point, kept as is
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cols, rows = rotation @ np.array(points).T
    return cols + c0, rows + r0


def _zigzag(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    corners = [_zigzag_points(rng) for rng in rngs]
    most = max((len(cols) for cols, _ in corners), default=0)
    # Pad with the last corner: a segment with c0 == c1 draws nothing, as in the reference.
    cols = np.array([np.pad(c, (0, most - len(c)), mode="edge") for c, _ in corners]).reshape(-1, most)
    rows = np.array([np.pad(r, (0, most - len(r)), mode="edge") for _, r in corners]).reshape(-1, most)
    pixels = images / 255.0
    for k in range(1, most):
        pixels = np.clip(
            pixels + _line_from_points(cols[:, k - 1], rows[:, k - 1], cols[:, k], rows[:, k]), 0, 1
        )
    return (pixels * 255).astype(np.float32)


def _canny_edges(images: _Images, severity: int, rngs: _Rngs) -> _Floats:
    edges = [_canny(image / 255.0) for image in images]
    return np.array(edges, dtype=np.float32).reshape(images.shape) * 255


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Corruption:
    apply: Callable[[_Images, int, _Rngs], _Floats]
    levels: int  # 5 where the reference has a per-severity list, 1 where its function has no severity


_CORRUPTIONS: dict[str, _Corruption] = {
    "shot_noise": _Corruption(_shot_noise, 5),
    "impulse_noise": _Corruption(_impulse_noise, 5),
    "glass_blur": _Corruption(_glass_blur, 5),
    "motion_blur": _Corruption(_motion_blur, 5),
    "shear": _Corruption(_shear, 5),
    "scale": _Corruption(_scale, 5),
    "rotate": _Corruption(_rotate, 5),
    "brightness": _Corruption(_brightness, 5),
    "translate": _Corruption(_translate, 5),
    "stripe": _Corruption(_stripe, 1),
    "fog": _Corruption(_fog, 5),
    "spatter": _Corruption(_spatter, 5),
    "dotted_line": _Corruption(_dotted_line, 1),
    "zigzag": _Corruption(_zigzag, 1),
    "canny_edges": _Corruption(_canny_edges, 1),
}
# name -> every severity `corrupt_images` accepts (the reference's levels), for callers that offer a choice.
SEVERITY_LEVELS: dict[str, tuple[int, ...]] = {
    name: tuple(range(1, corruption.levels + 1)) for name, corruption in _CORRUPTIONS.items()
}
