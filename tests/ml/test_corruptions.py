"""The corruption benchmark: shapes, severity order, determinism, small grey images, and the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from imagecorruptions import get_corruption_names

import worker.ml.corruptions as corruptions_module
from worker.ml.corruptions import (
    CORRUPTION_NAMES,
    CORRUPTION_SEVERITIES,
    GAUSSIAN_SEVERITIES,
    add_gaussian_noise_uint8,
    build_corruption_suite,
    corrupt_images,
    gaussian_severities_for,
)

FEW_NAMES = ("impulse_noise", "glass_blur", "zoom_blur", "frost", "contrast")


def digit_like(count: int, side: int = 28) -> np.ndarray:
    """Grey strokes on black, like MNIST: a bright square ring per image, shifted a little."""
    images = np.zeros((count, side, side, 1), dtype=np.uint8)
    for index in range(count):
        low, high = 6 + index % 3, side - 7 + index % 2
        images[index, low:high, low : low + 3] = 255
        images[index, low:high, high - 3 : high] = 200
        images[index, low : low + 3, low:high] = 230
    return images


def photo_like(count: int, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    base = np.stack(
        [ramp[None, :] * np.ones((side, 1)), ramp[:, None] * np.ones((1, side)), 128 * np.ones((side, side))],
        -1,
    )
    noise = rng.normal(0, 20, (count, side, side, 3))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def test_names_and_severities_are_the_documented_ones() -> None:
    assert tuple(get_corruption_names("common")) == CORRUPTION_NAMES
    assert len(CORRUPTION_NAMES) == 15 and CORRUPTION_SEVERITIES == (1, 2, 3, 4, 5)
    assert GAUSSIAN_SEVERITIES["cifar10"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert gaussian_severities_for("mnist") == GAUSSIAN_SEVERITIES["mnist"]
    assert gaussian_severities_for("CIFAR10-subset") == GAUSSIAN_SEVERITIES["cifar10"]
    assert gaussian_severities_for("my-photos") == GAUSSIAN_SEVERITIES["default"]
    for severities in GAUSSIAN_SEVERITIES.values():
        assert list(severities) == sorted(severities) and len(severities) == 5


def test_gaussian_noise_grows_with_severity_and_is_seeded() -> None:
    images = photo_like(6)
    noisy = add_gaussian_noise_uint8(images, GAUSSIAN_SEVERITIES["mnist"], seed=1)
    changes = []
    for c, result in noisy.items():
        assert result.shape == images.shape and result.dtype == np.uint8
        changes.append(np.abs(result.astype(np.float64) - images).mean())
        # unclipped pixels moved by about c·255 on average: E|N(0, c²)| = c·sqrt(2/π)
        assert changes[-1] < c * 255 * 0.85
    assert changes == sorted(changes) and changes[0] > 0
    again = add_gaussian_noise_uint8(images, GAUSSIAN_SEVERITIES["mnist"], seed=1)
    other = add_gaussian_noise_uint8(images, GAUSSIAN_SEVERITIES["mnist"], seed=2)
    for c in noisy:
        np.testing.assert_array_equal(noisy[c], again[c])
        assert not np.array_equal(noisy[c], other[c])


def test_grey_28x28_suite_keeps_shape_dtype_and_is_deterministic() -> None:
    images = digit_like(3)
    state_before = np.random.get_state()[1].copy()
    suite = build_corruption_suite(images, dataset_key="mnist", seed=0, corruption_names=FEW_NAMES)
    np.testing.assert_array_equal(np.random.get_state()[1], state_before)  # global RNG left alone
    assert sorted(suite.gaussian) == list(GAUSSIAN_SEVERITIES["mnist"])
    assert tuple(suite.corruptions) == FEW_NAMES
    for name, by_severity in suite.corruptions.items():
        assert tuple(by_severity) == CORRUPTION_SEVERITIES
        for severity, result in by_severity.items():
            assert result.shape == images.shape and result.dtype == np.uint8, (name, severity)
    contrast = [
        np.abs(suite.corruptions["contrast"][s].astype(float) - images).mean() for s in CORRUPTION_SEVERITIES
    ]
    assert contrast == sorted(contrast) and contrast[0] > 5
    again = build_corruption_suite(images, dataset_key="mnist", seed=0, corruption_names=FEW_NAMES[::-1])
    other_seed = build_corruption_suite(
        images, dataset_key="mnist", seed=1, corruption_names=("impulse_noise",)
    )
    for name in FEW_NAMES:
        for severity in CORRUPTION_SEVERITIES:
            np.testing.assert_array_equal(
                suite.corruptions[name][severity], again.corruptions[name][severity]
            )
    assert not np.array_equal(
        suite.corruptions["impulse_noise"][3], other_seed.corruptions["impulse_noise"][3]
    )


def test_tiny_images_are_resized_for_the_library_and_back() -> None:
    images = photo_like(2, side=8)
    result = corrupt_images(images, "contrast", 5, seed=0)
    assert result.shape == (2, 8, 8, 3) and result.dtype == np.uint8
    # contrast 5 keeps 5 % of the deviation from the mean: the spread collapses at the original size too
    assert result.astype(float).std() < 0.3 * images.astype(float).std()


def test_all_fifteen_corruptions_on_two_colour_images() -> None:
    images = photo_like(2)
    suite = build_corruption_suite(images, dataset_key="cifar10", seed=0)
    assert tuple(suite.corruptions) == CORRUPTION_NAMES
    for name, by_severity in suite.corruptions.items():
        strongest = by_severity[5]
        assert strongest.shape == images.shape and strongest.dtype == np.uint8, name
        assert np.abs(strongest.astype(float) - images).mean() > 1.0, name
    assert len(list(suite.items())) == 5 + 15 * 5


def test_cache_hit_returns_identical_arrays_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = digit_like(2)
    names = ("contrast", "pixelate")
    first = build_corruption_suite(
        images, dataset_key="mnist", seed=0, cache_dir=tmp_path, corruption_names=names
    )
    (cache_file,) = tmp_path.glob("*.npz")
    assert cache_file.name.startswith("corruptions-mnist-x")
    assert "-seed0-" in cache_file.name
    modified = cache_file.stat().st_mtime_ns

    def must_not_run(*_args: object, **_kwargs: object) -> np.ndarray:
        raise AssertionError("a cached suite was recomputed")

    with monkeypatch.context() as patch:
        patch.setattr(corruptions_module, "corrupt_images", must_not_run)
        patch.setattr(corruptions_module, "add_gaussian_noise_uint8", must_not_run)
        cached = build_corruption_suite(
            images, dataset_key="mnist", seed=0, cache_dir=tmp_path, corruption_names=names
        )
    assert cache_file.stat().st_mtime_ns == modified
    for c, result in first.gaussian.items():
        np.testing.assert_array_equal(cached.gaussian[c], result)
    for name in names:
        for severity in CORRUPTION_SEVERITIES:
            np.testing.assert_array_equal(
                cached.corruptions[name][severity], first.corruptions[name][severity]
            )

    # A different seed or different test images are different cache entries.
    build_corruption_suite(images, dataset_key="mnist", seed=1, cache_dir=tmp_path, corruption_names=names)
    build_corruption_suite(
        images[:1], dataset_key="mnist", seed=0, cache_dir=tmp_path, corruption_names=names
    )
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert not list(tmp_path.glob(".tmp-*"))


def test_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    images = digit_like(2)
    first = build_corruption_suite(
        images, dataset_key="mnist", cache_dir=tmp_path, corruption_names=("pixelate",)
    )
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    rebuilt = build_corruption_suite(
        images, dataset_key="mnist", cache_dir=tmp_path, corruption_names=("pixelate",), progress=True
    )
    np.testing.assert_array_equal(rebuilt.corruptions["pixelate"][2], first.corruptions["pixelate"][2])
    assert os.path.getsize(cache_file) > 100


def test_bad_arguments_are_refused() -> None:
    images = digit_like(1)
    with pytest.raises(ValueError, match="unknown corruption"):
        build_corruption_suite(images, dataset_key="mnist", corruption_names=("rain",))
    with pytest.raises(ValueError, match="expected uint8"):
        build_corruption_suite(images.astype(np.float32), dataset_key="mnist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt_images(images, "contrast", 6)
