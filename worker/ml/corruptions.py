"""The corruption benchmark: Gaussian noise at the dataset's severities and the 15 common corruptions x 5.

A `CorruptionSuite` holds uint8 NHWC copies of the test images for every (corruption, severity). The 15
common corruptions come from `imagecorruptions-imaug` (module `imagecorruptions`, Hendrycks &
Dietterich's ImageNet-C code); that library wants H x W x 3 images of at least 32 x 32, so grey
images are stacked to 3 channels and turned back into grey with ITU-R 601 luma, and smaller images are
resized up, corrupted, and only the *change* the corruption made is resized back and added to the
original (so the clean pixels never go through a resize round trip). Each image is corrupted under its
own NumPy seed, derived from (seed, corruption, severity, image index), so suites are reproducible and
a subset of corruption names gives the same arrays as the full suite. Suites are cached as .npz under
`cache_dir`, keyed by dataset key, a hash of the test images, the seed and the library's version.
See docs/datasets.md for the definition and timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm import tqdm

from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES

# σ on pixels in [0, 1]; noise is N(0, c²) added to every pixel and clipped.
GAUSSIAN_SEVERITIES: dict[str, tuple[float, ...]] = {
    # CIFAR-10-C's gaussian_noise levels (Hendrycks & Dietterich 2019, CIFAR variant of the code).
    "cifar10": (0.04, 0.06, 0.08, 0.09, 0.10),
    # MNIST digits are high-contrast strokes on black; at CIFAR's levels a plain CNN barely changes.
    # 0.1..0.5 spans "hardly visible" to "strokes half-buried" (ladder indices 10..50, so each
    # severity is a level an annotator can see), where standard and noise-trained models separate.
    "mnist": (0.1, 0.2, 0.3, 0.4, 0.5),
    # The 8x8 digits upsampled to 32x32 are MNIST-like strokes: same levels.
    "digits": (0.1, 0.2, 0.3, 0.4, 0.5),
    # Other natural images: ImageNet-C's gaussian_noise levels, the library's own.
    "default": (0.08, 0.12, 0.18, 0.26, 0.38),
}

LIBRARY_DISTRIBUTION = "imagecorruptions-imaug"
LIBRARY_MIN_SIDE = 32  # imagecorruptions refuses smaller images (zoom_blur and frost crops need 32)
# These two draw from their own `seed` argument instead of NumPy's global generator.
_SEEDED_BY_ARGUMENT = frozenset({"impulse_noise", "glass_blur"})
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
SUITE_FORMAT_VERSION = 2  # bump when the way a suite is made changes, so old caches are not reused
_GAUSSIAN_CHUNK = 1024  # images per float32 chunk when adding Gaussian noise (bounds memory)


@dataclass(frozen=True, eq=False)
class CorruptionSuite:
    """Corrupted copies of one test set, each uint8 NHWC with the test set's shape."""

    gaussian: dict[float, npt.NDArray[np.uint8]]  # severity c -> clip(x + N(0, c²)) images
    corruptions: dict[str, dict[int, npt.NDArray[np.uint8]]]  # name -> severity 1..5 -> images

    def items(self) -> Iterator[tuple[str, float | int, npt.NDArray[np.uint8]]]:
        """("gaussian", c, images) then (name, severity, images) for every corruption."""
        for severity, images in self.gaussian.items():
            yield "gaussian", severity, images
        for name, by_severity in self.corruptions.items():
            for level, images in by_severity.items():
                yield name, level, images


def library_version() -> str:
    return importlib.metadata.version(LIBRARY_DISTRIBUTION)


def gaussian_severities_for(dataset_key: str) -> tuple[float, ...]:
    """The Gaussian levels of the dataset whose name starts `dataset_key` (e.g. "mnist-5k"), else default."""
    key = dataset_key.lower()
    for name, severities in GAUSSIAN_SEVERITIES.items():
        if name != "default" and key.startswith(name):
            return severities
    return GAUSSIAN_SEVERITIES["default"]


def add_gaussian_noise_uint8(
    images: npt.NDArray[np.uint8], severities: Sequence[float], *, seed: int
) -> dict[float, npt.NDArray[np.uint8]]:
    """clip(x + c·ε, 0, 1) for each c, with one ε ~ N(0, I) per pixel shared by all severities.

    Sharing ε means the severities differ only in c, so accuracy falls with c for the model's sake
    rather than because of a luckier draw.
    """
    noisy = {float(c): np.empty_like(images) for c in severities}
    rng = np.random.default_rng([seed, 0x6A055])
    for start in range(0, len(images), _GAUSSIAN_CHUNK):
        chunk = images[start : start + _GAUSSIAN_CHUNK].astype(np.float32) / np.float32(255.0)
        epsilon = rng.standard_normal(chunk.shape, dtype=np.float32)
        for c in noisy:
            pixels = np.clip(chunk + np.float32(c) * epsilon, 0.0, 1.0)
            noisy[c][start : start + _GAUSSIAN_CHUNK] = np.rint(pixels * np.float32(255.0)).astype(np.uint8)
    return noisy


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
    if severity not in CORRUPTION_SEVERITIES:
        raise ValueError(f"severity must be one of {CORRUPTION_SEVERITIES}, got {severity!r}")
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


def _check_images(images: npt.NDArray[Any]) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, H, W, C) images with C in {{1, 3}}, got {images.dtype} {images.shape}"
        )


def _suite_key(
    x_test: npt.NDArray[np.uint8],
    *,
    dataset_key: str,
    seed: int,
    names: Sequence[str],
    severities: Sequence[float],
    levels: Sequence[int],
) -> tuple[str, dict[str, Any]]:
    images_hash = hashlib.sha256()  # the test images' content, so a changed test set never hits a stale cache
    images_hash.update(repr((x_test.shape, str(x_test.dtype))).encode())
    images_hash.update(np.ascontiguousarray(x_test).tobytes())
    images_digest = images_hash.hexdigest()
    description: dict[str, Any] = {
        "dataset_key": dataset_key,
        "x_test_sha256": images_digest,
        "seed": seed,
        "library": LIBRARY_DISTRIBUTION,
        "library_version": library_version(),
        "corruption_names": list(names),
        "gaussian_severities": [float(c) for c in severities],
        "corruption_severities": [int(level) for level in levels],
        "format_version": SUITE_FORMAT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    safe_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_key)[:64] or "dataset"
    file_name = f"corruptions-{safe_key}-x{images_digest[:12]}-seed{seed}-{digest}.npz"
    return file_name, description


def _load_cached(path: Path, description: dict[str, Any]) -> CorruptionSuite | None:
    try:
        # Opened here so a damaged file is closed even when numpy gives up half-way.
        with path.open("rb") as stream, np.load(stream, allow_pickle=False) as archive:
            if json.loads(str(archive["meta"])) != description:
                return None
            gaussian = {
                float(c): archive[f"gaussian_{float(c)!r}"] for c in description["gaussian_severities"]
            }
            levels = description["corruption_severities"]
            corruptions = {
                name: {level: archive[f"corruption_{name}_{level}"] for level in levels}
                for name in description["corruption_names"]
            }
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile):
        return None  # a damaged or foreign cache file is rebuilt, not trusted
    return CorruptionSuite(gaussian=gaussian, corruptions=corruptions)


def _save_cached(path: Path, suite: CorruptionSuite, description: dict[str, Any]) -> None:
    arrays: dict[str, npt.NDArray[Any]] = {"meta": np.array(json.dumps(description, sort_keys=True))}
    arrays.update({f"gaussian_{c!r}": images for c, images in suite.gaussian.items()})
    for name, by_severity in suite.corruptions.items():
        arrays.update({f"corruption_{name}_{level}": images for level, images in by_severity.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash or a parallel worker never leaves a half-written cache file.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            np.savez(stream, **arrays)  # type: ignore[arg-type]
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_corruption_suite(
    x_test: npt.NDArray[np.uint8],
    *,
    dataset_key: str,
    seed: int = 0,
    cache_dir: Path | None = None,
    corruption_names: Sequence[str] | None = None,
    progress: bool = False,
    gaussian_severities: Sequence[float] | None = None,
    corruption_severities: Sequence[int] | None = None,
) -> CorruptionSuite:
    """Gaussian noise at the dataset's severities plus each corruption at severities 1..5, cached.

    `gaussian_severities` defaults to `gaussian_severities_for(dataset_key)`; `corruption_names` to all 15;
    `corruption_severities` to 1..5 (a subset keeps CPU evaluations short).
    """
    _check_images(x_test)
    names = tuple(CORRUPTION_NAMES if corruption_names is None else corruption_names)
    unknown = [name for name in names if name not in CORRUPTION_NAMES]
    if unknown:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown)} (expected some of {', '.join(CORRUPTION_NAMES)})"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"corruption names repeat: {', '.join(names)}")
    severities = tuple(
        float(c)
        for c in (
            gaussian_severities_for(dataset_key) if gaussian_severities is None else gaussian_severities
        )
    )
    levels = tuple(CORRUPTION_SEVERITIES if corruption_severities is None else corruption_severities)
    cache_path: Path | None = None
    description: dict[str, Any] = {}
    if cache_dir is not None:
        file_name, description = _suite_key(
            x_test, dataset_key=dataset_key, seed=seed, names=names, severities=severities, levels=levels
        )
        cache_path = Path(cache_dir) / file_name
        if cache_path.is_file():
            cached = _load_cached(cache_path, description)
            if cached is not None:
                return cached
    gaussian = add_gaussian_noise_uint8(x_test, severities, seed=seed)
    corruptions: dict[str, dict[int, npt.NDArray[np.uint8]]] = {}
    with tqdm(
        total=len(names) * len(levels) * len(x_test),
        desc=f"corrupting {dataset_key}",
        unit="img",
        disable=not progress,
    ) as bar:
        for name in names:
            corruptions[name] = {}
            for severity in levels:
                bar.set_postfix_str(f"{name} {severity}")
                corruptions[name][severity] = corrupt_images(x_test, name, severity, seed=seed)
                bar.update(len(x_test))
    suite = CorruptionSuite(gaussian=gaussian, corruptions=corruptions)
    if cache_path is not None:
        _save_cached(cache_path, suite, description)
    return suite
