"""`imagenet-c-lowres`: ImageNet-C's 15 common corruptions x 5, as `imagecorruptions-imaug` makes them.

The fallback suite for image sizes that have no benchmark of their own (neither 28x28 grey nor 32x32
colour). The library wants H x W x 3 images of at least 32 x 32, so grey images are stacked to 3
channels and turned back into grey with ITU-R 601 luma, and smaller images are resized up,
corrupted, and only the *change* the corruption made is resized back and added to the original (so
the clean pixels never go through a resize round trip). Its parameters are ImageNet-C's, meant for
224-pixel photographs: on small images they are a stress test, not a published benchmark.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from aqpl.corruption_names import CORRUPTION_NAMES
from aqpl.corruption_names import CORRUPTION_SEVERITIES as LEVELS
from worker.ml.corruptions import _check_images

SUITE_NAME = "imagenet-c-lowres"
CORRUPTION_SEVERITIES: dict[str, tuple[int, ...]] = {name: LEVELS for name in CORRUPTION_NAMES}
IMPLEMENTATION_VERSION = 2  # was corruptions.SUITE_FORMAT_VERSION before the suites were split
LIBRARY_DISTRIBUTION = "imagecorruptions-imaug"
LIBRARY_MIN_SIDE = 32  # imagecorruptions refuses smaller images (zoom_blur and frost crops need 32)
# These two draw from their own `seed` argument instead of NumPy's global generator.
_SEEDED_BY_ARGUMENT = frozenset({"impulse_noise", "glass_blur"})
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def library_version() -> str:
    return importlib.metadata.version(LIBRARY_DISTRIBUTION)


def _image_seed(seed: int, name: str, severity: int, image_index: int) -> int:
    name_index = CORRUPTION_NAMES.index(name)
    state = np.random.SeedSequence([seed, name_index, severity, image_index]).generate_state(
        1, dtype=np.uint32
    )
    return int(state[0])


def _library_size(height: int, width: int) -> tuple[int, int]:
    if min(height, width) >= LIBRARY_MIN_SIDE:
        return height, width
    scale = LIBRARY_MIN_SIDE / min(height, width)
    return max(LIBRARY_MIN_SIDE, round(height * scale)), max(LIBRARY_MIN_SIDE, round(width * scale))


def _resize(images: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear resize of float NHWC images (antialiased when shrinking)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    shrinking = size[0] < images.shape[1] or size[1] < images.shape[2]
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


def corrupt_images(
    images: npt.NDArray[np.uint8], name: str, severity: int, *, seed: int = 0
) -> npt.NDArray[np.uint8]:
    """One corruption at one severity (1..5) on uint8 NHWC images (C in {1, 3}, any size); same shape out."""
    from imagecorruptions import corrupt  # heavy (OpenCV, scikit-image, numba); only when used

    _check_images(images)
    if name not in CORRUPTION_NAMES:
        raise ValueError(f"unknown corruption {name!r} (expected one of {', '.join(CORRUPTION_NAMES)})")
    if severity not in LEVELS:
        raise ValueError(f"severity must be one of {LEVELS}, got {severity!r}")
    count, height, width, channels = images.shape
    big_size = _library_size(height, width)
    needs_resize = big_size != (height, width)
    rgb = np.repeat(images, 3, axis=3) if channels == 1 else images
    if needs_resize:
        big_clean = np.clip(np.rint(_resize(rgb.astype(np.float32), big_size)), 0, 255).astype(np.uint8)
    else:
        big_clean = rgb
    corrupted = np.empty_like(big_clean)
    saved_state = np.random.get_state()
    try:
        # The library prints (not warns) when zoom_blur/snow shapes need fixing: keep logs clean.
        with contextlib.redirect_stdout(io.StringIO()):
            for index in range(count):
                image_seed = _image_seed(seed, name, severity, index)
                np.random.seed(image_seed)
                extra: dict[str, Any] = {"seed": image_seed} if name in _SEEDED_BY_ARGUMENT else {}
                result = corrupt(big_clean[index], corruption_name=name, severity=severity, **extra)
                corrupted[index] = np.asarray(result, dtype=np.uint8).reshape(big_clean.shape[1:])
    finally:
        np.random.set_state(saved_state)
    if channels == 1:
        corrupted_values = corrupted.astype(np.float32) @ _LUMA
        corrupted_values = corrupted_values[..., np.newaxis]
        clean_values = big_clean[..., :1].astype(np.float32)
    else:
        corrupted_values = corrupted.astype(np.float32)
        clean_values = big_clean.astype(np.float32)
    if needs_resize:
        change = _resize(corrupted_values - clean_values, (height, width))
        result_values = images.astype(np.float32) + change
    else:
        result_values = corrupted_values
    rounded: npt.NDArray[np.float32] = np.clip(np.rint(result_values), 0, 255)
    return rounded.astype(np.uint8)
