"""The corruption benchmarks: Gaussian noise plus one suite of common corruptions per kind of data.

Three suites, each named in every result that uses it:

- `mnist-c` (`mnist_c.py`): the 15 corruptions of MNIST-C (Mu & Gilmer 2019), one severity each, as
  the reference generates them; the default for 28x28 grey images.
- `cifar10-c` (`cifar10_c.py`): CIFAR-10-C's 15 common corruptions x 5 severities with its own
  per-severity parameters (Hendrycks & Dietterich 2019); the default for 32x32 colour images.
- `imagenet-c-lowres` (`imagenet_c_lowres.py`): ImageNet-C's parameters through
  `imagecorruptions-imaug`, resized for small images; the fallback for every other size.

A `CorruptionSuite` holds uint8 NHWC copies of the test images for every Gaussian severity and every
(corruption, severity). Each image is corrupted under its own seed, derived from (seed, corruption,
severity, image index), so suites are reproducible and a subset of names gives the same arrays as the
whole suite. Suites are cached as .npz under `cache_dir`, keyed by suite, dataset key, a hash of the
test images, the seed and the implementation's version. See docs/datasets.md.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES

SUITE_NAMES = ("mnist-c", "cifar10-c", "imagenet-c-lowres")
FALLBACK_SUITE = "imagenet-c-lowres"
_SUITE_MODULES = {
    "mnist-c": "worker.ml.corruptions.mnist_c",
    "cifar10-c": "worker.ml.corruptions.cifar10_c",
    "imagenet-c-lowres": "worker.ml.corruptions.imagenet_c_lowres",
}

# σ on pixels in [0, 1]; noise is N(0, c²) added to every pixel and clipped.
GAUSSIAN_SEVERITIES: dict[str, tuple[float, ...]] = {
    # CIFAR-10-C's gaussian_noise levels (Hendrycks & Dietterich 2019, CIFAR variant of the code).
    "cifar10": (0.04, 0.06, 0.08, 0.09, 0.10),
    # MNIST-C has no Gaussian noise, yet the paper reports a column. At CIFAR's levels an MNIST CNN
    # barely changes (digits are high-contrast strokes on black). 0.1..0.5 spans "hardly visible"
    # to "strokes half-buried", equally spaced on the annotators' ladder (indices 10..50) and up to
    # GNT's own MNIST level, where standard and noise-trained models separate.
    "mnist": (0.1, 0.2, 0.3, 0.4, 0.5),
    # The 8x8 digits upsampled to 32x32 are MNIST-like strokes: same levels.
    "digits": (0.1, 0.2, 0.3, 0.4, 0.5),
    # Other natural images: ImageNet-C's gaussian_noise levels, the library's own.
    "default": (0.08, 0.12, 0.18, 0.26, 0.38),
}
# Gaussian levels a suite always uses, whatever the dataset's name.
_SUITE_GAUSSIAN = {"mnist-c": GAUSSIAN_SEVERITIES["mnist"], "cifar10-c": GAUSSIAN_SEVERITIES["cifar10"]}
SUITE_FORMAT_VERSION = 3  # bump when the cache layout changes, so old caches are not reused
_GAUSSIAN_CHUNK = 1024  # images per float32 chunk when adding Gaussian noise (bounds memory)


class CorruptFunction(Protocol):
    def __call__(
        self, images: npt.NDArray[np.uint8], name: str, severity: int, *, seed: int
    ) -> npt.NDArray[np.uint8]: ...


@dataclass(frozen=True)
class SuiteDefinition:
    """What a suite corrupts: its corruptions, the severities of each, and the function that does it."""

    name: str
    corruption_severities: Mapping[str, tuple[int, ...]]  # in the reference's order
    corrupt: CorruptFunction
    version: int  # the implementation's version: part of the cache key


@dataclass(frozen=True, eq=False)
class CorruptionSuite:
    """Corrupted copies of one test set, each uint8 NHWC with the test set's shape."""

    gaussian: dict[float, npt.NDArray[np.uint8]]  # severity c -> clip(x + N(0, c²)) images
    corruptions: dict[str, dict[int, npt.NDArray[np.uint8]]]  # name -> severity -> images
    name: str = FALLBACK_SUITE

    def items(self) -> Iterator[tuple[str, float | int, npt.NDArray[np.uint8]]]:
        """("gaussian", c, images) then (name, severity, images) for every corruption."""
        for severity, images in self.gaussian.items():
            yield "gaussian", severity, images
        for name, by_severity in self.corruptions.items():
            for level, images in by_severity.items():
                yield name, level, images


def suite_definition(name: str) -> SuiteDefinition:
    """The suite called `name` (one of SUITE_NAMES); its module is imported only when asked for."""
    if name not in _SUITE_MODULES:
        raise ValueError(f"unknown corruption suite {name!r} (expected one of {', '.join(SUITE_NAMES)})")
    module = importlib.import_module(_SUITE_MODULES[name])
    return SuiteDefinition(
        name=name,
        corruption_severities=dict(module.CORRUPTION_SEVERITIES),
        corrupt=cast(CorruptFunction, module.corrupt_images),
        version=int(module.IMPLEMENTATION_VERSION),
    )


def default_suite_name(image_shape: Sequence[int]) -> str:
    """mnist-c for 28x28 grey images, cifar10-c for 32x32 colour, imagenet-c-lowres for the rest."""
    height, width, channels = (int(side) for side in image_shape)
    if (height, width, channels) == (28, 28, 1):
        return "mnist-c"
    if (height, width, channels) == (32, 32, 3):
        return "cifar10-c"
    return FALLBACK_SUITE


def suite_corruption_names(name: str) -> tuple[str, ...]:
    return tuple(suite_definition(name).corruption_severities)


def gaussian_severities_for(dataset_key: str, suite: str = FALLBACK_SUITE) -> tuple[float, ...]:
    """The suite's own Gaussian levels, else those of the dataset whose name starts `dataset_key`."""
    if suite in _SUITE_GAUSSIAN:
        return _SUITE_GAUSSIAN[suite]
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


def corrupt_images(
    images: npt.NDArray[np.uint8], name: str, severity: int, *, seed: int = 0, suite: str = FALLBACK_SUITE
) -> npt.NDArray[np.uint8]:
    """One corruption of `suite` at one severity on uint8 NHWC images; same shape out."""
    _check_images(images)
    return suite_definition(suite).corrupt(images, name, severity, seed=seed)


def _check_images(images: npt.NDArray[Any]) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(
            f"expected uint8 (N, H, W, C) images with C in {{1, 3}}, got {images.dtype} {images.shape}"
        )


def _suite_key(
    x_test: npt.NDArray[np.uint8],
    *,
    definition: SuiteDefinition,
    dataset_key: str,
    seed: int,
    plan: Mapping[str, Sequence[int]],
    severities: Sequence[float],
) -> tuple[str, dict[str, Any]]:
    images_hash = hashlib.sha256()  # the test images' content, so a changed test set never hits a stale cache
    images_hash.update(repr((x_test.shape, str(x_test.dtype))).encode())
    images_hash.update(np.ascontiguousarray(x_test).tobytes())
    images_digest = images_hash.hexdigest()
    description: dict[str, Any] = {
        "suite": definition.name,
        "suite_version": definition.version,
        "dataset_key": dataset_key,
        "x_test_sha256": images_digest,
        "seed": seed,
        "corruptions": {name: [int(level) for level in levels] for name, levels in plan.items()},
        "gaussian_severities": [float(c) for c in severities],
        "format_version": SUITE_FORMAT_VERSION,
    }
    if definition.name == FALLBACK_SUITE:
        from worker.ml.corruptions.imagenet_c_lowres import library_version

        description["library_version"] = library_version()
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    safe_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_key)[:64] or "dataset"
    file_name = f"corruptions-{definition.name}-{safe_key}-x{images_digest[:12]}-seed{seed}-{digest}.npz"
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
            corruptions = {
                name: {level: archive[f"corruption_{name}_{level}"] for level in levels}
                for name, levels in description["corruptions"].items()
            }
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile):
        return None  # a damaged or foreign cache file is rebuilt, not trusted
    return CorruptionSuite(gaussian=gaussian, corruptions=corruptions, name=description["suite"])


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


def _plan(
    definition: SuiteDefinition,
    corruption_names: Sequence[str] | None,
    corruption_severities: Sequence[int] | None,
) -> dict[str, tuple[int, ...]]:
    """name -> severities to make: the suite's own, narrowed to the names and severities asked for."""
    names = tuple(definition.corruption_severities if corruption_names is None else corruption_names)
    unknown = [name for name in names if name not in definition.corruption_severities]
    if unknown:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown)} for suite {definition.name} "
            f"(expected some of {', '.join(definition.corruption_severities)})"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"corruption names repeat: {', '.join(names)}")
    return {
        name: tuple(
            level
            for level in definition.corruption_severities[name]
            if corruption_severities is None or level in corruption_severities
        )
        for name in names
    }


def build_corruption_suite(
    x_test: npt.NDArray[np.uint8],
    *,
    dataset_key: str,
    seed: int = 0,
    cache_dir: Path | None = None,
    suite: str | None = None,
    corruption_names: Sequence[str] | None = None,
    progress: bool = False,
    gaussian_severities: Sequence[float] | None = None,
    corruption_severities: Sequence[int] | None = None,
) -> CorruptionSuite:
    """Gaussian noise at the suite's (or dataset's) severities plus each corruption of `suite`, cached.

    `suite` defaults to `default_suite_name` of the images' shape; `corruption_names` to all of the
    suite's; `corruption_severities` narrows every corruption's severities (a subset keeps CPU
    evaluations short).
    """
    _check_images(x_test)
    definition = suite_definition(default_suite_name(x_test.shape[1:]) if suite is None else suite)
    plan = _plan(definition, corruption_names, corruption_severities)
    severities = tuple(
        float(c)
        for c in (
            gaussian_severities_for(dataset_key, definition.name)
            if gaussian_severities is None
            else gaussian_severities
        )
    )
    cache_path: Path | None = None
    description: dict[str, Any] = {}
    if cache_dir is not None:
        file_name, description = _suite_key(
            x_test,
            definition=definition,
            dataset_key=dataset_key,
            seed=seed,
            plan=plan,
            severities=severities,
        )
        cache_path = Path(cache_dir) / file_name
        if cache_path.is_file():
            cached = _load_cached(cache_path, description)
            if cached is not None:
                return cached
    gaussian = add_gaussian_noise_uint8(x_test, severities, seed=seed)
    corruptions: dict[str, dict[int, npt.NDArray[np.uint8]]] = {}
    with tqdm(
        total=sum(len(levels) for levels in plan.values()) * len(x_test),
        desc=f"corrupting {dataset_key} ({definition.name})",
        unit="img",
        disable=not progress,
    ) as bar:
        for name, levels in plan.items():
            corruptions[name] = {}
            for severity in levels:
                bar.set_postfix_str(f"{name} {severity}")
                corruptions[name][severity] = definition.corrupt(x_test, name, severity, seed=seed)
                bar.update(len(x_test))
    result = CorruptionSuite(gaussian=gaussian, corruptions=corruptions, name=definition.name)
    if cache_path is not None:
        _save_cached(cache_path, result, description)
    return result


__all__ = [
    "CORRUPTION_NAMES",
    "CORRUPTION_SEVERITIES",
    "FALLBACK_SUITE",
    "GAUSSIAN_SEVERITIES",
    "SUITE_NAMES",
    "CorruptionSuite",
    "SuiteDefinition",
    "add_gaussian_noise_uint8",
    "build_corruption_suite",
    "corrupt_images",
    "default_suite_name",
    "gaussian_severities_for",
    "suite_corruption_names",
    "suite_definition",
]
