"""The corruption benchmarks: suite registry, shapes, severity order, determinism, small images, cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from imagecorruptions import get_corruption_names

import worker.ml.corruptions as corruptions_module
from worker.ml.corruptions import (
    CORRUPTION_NAMES,
    CORRUPTION_SEVERITIES,
    FALLBACK_SUITE,
    GAUSSIAN_SEVERITIES,
    SUITE_NAMES,
    add_gaussian_noise_uint8,
    build_corruption_suite,
    cifar10_c,
    corrupt_images,
    default_suite_name,
    gaussian_severities_for,
    imagenet_c_lowres,
    mnist_c,
    suite_corruption_names,
)

FEW_NAMES = ("impulse_noise", "glass_blur", "zoom_blur", "frost", "contrast")
LOWRES = "imagenet-c-lowres"  # the library-based fallback suite, which most tests here are about
SUITE_MODULES: tuple[ModuleType, ...] = (mnist_c, cifar10_c, imagenet_c_lowres)


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


def record_computation(patch: pytest.MonkeyPatch) -> list[str]:
    """Swap every suite's corruption function and the Gaussian noise for stand-ins that log their calls.

    The suite modules' `corrupt_images` are what every suite definition calls, and the package's
    `add_gaussian_noise_uint8` is what every build calls: a build that logs nothing computed nothing.
    """
    calls: list[str] = []

    def fake_gaussian(
        images: np.ndarray, severities: Sequence[float], *, seed: int
    ) -> dict[float, np.ndarray]:
        calls.append("gaussian")
        return {float(c): images.copy() for c in severities}

    def fake_corrupt(images: np.ndarray, name: str, severity: int, *, seed: int, **_: object) -> np.ndarray:
        calls.append(f"{name} {severity}")
        return images.copy()

    patch.setattr(corruptions_module, "add_gaussian_noise_uint8", fake_gaussian)
    for module in SUITE_MODULES:
        patch.setattr(module, "corrupt_images", fake_corrupt)
    return calls


def test_names_and_severities_are_the_documented_ones() -> None:
    assert tuple(get_corruption_names("common")) == CORRUPTION_NAMES
    assert len(CORRUPTION_NAMES) == 15 and CORRUPTION_SEVERITIES == (1, 2, 3, 4, 5)
    assert GAUSSIAN_SEVERITIES["cifar10"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert gaussian_severities_for("mnist") == GAUSSIAN_SEVERITIES["mnist"]
    assert gaussian_severities_for("CIFAR10-subset") == GAUSSIAN_SEVERITIES["cifar10"]
    assert gaussian_severities_for("my-photos") == GAUSSIAN_SEVERITIES["default"]
    for severities in GAUSSIAN_SEVERITIES.values():
        assert list(severities) == sorted(severities) and len(severities) == 5
    # mnist-c and cifar10-c bring their own Gaussian levels whatever the dataset is called.
    assert gaussian_severities_for("my-photos", "cifar10-c") == GAUSSIAN_SEVERITIES["cifar10"]
    assert gaussian_severities_for("cifar10", "mnist-c") == GAUSSIAN_SEVERITIES["mnist"]
    assert gaussian_severities_for("mnist", LOWRES) == GAUSSIAN_SEVERITIES["mnist"]
    assert SUITE_NAMES == ("mnist-c", "cifar10-c", LOWRES) and FALLBACK_SUITE == LOWRES
    assert suite_corruption_names(LOWRES) == CORRUPTION_NAMES
    assert suite_corruption_names("cifar10-c") == CORRUPTION_NAMES
    assert suite_corruption_names("mnist-c") == tuple(mnist_c.CORRUPTION_SEVERITIES)
    assert len(suite_corruption_names("mnist-c")) == 15


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


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((28, 28, 1), "mnist-c"),
        ((32, 32, 3), "cifar10-c"),
        ((32, 32, 1), LOWRES),  # grey 32x32 is not CIFAR
        ((28, 28, 3), LOWRES),  # colour 28x28 is not MNIST
        ((8, 8, 1), LOWRES),
        ((64, 64, 3), LOWRES),
        ((32, 28, 3), LOWRES),
    ],
)
def test_default_suite_follows_the_image_shape(shape: tuple[int, int, int], expected: str) -> None:
    assert default_suite_name(shape) == expected


def test_grey_28x28_images_get_mnist_c_with_one_severity_each() -> None:
    images = digit_like(2)
    # "my-digits" matches no dataset's Gaussian levels: the ones below are the suite's own.
    suite = build_corruption_suite(images, dataset_key="my-digits", seed=0)
    assert suite.name == "mnist-c"
    assert tuple(suite.corruptions) == tuple(mnist_c.CORRUPTION_SEVERITIES)
    assert (
        len(suite.corruptions) == 15 and "shear" in suite.corruptions and "contrast" not in suite.corruptions
    )
    assert tuple(suite.gaussian) == GAUSSIAN_SEVERITIES["mnist"]
    for name, by_severity in suite.corruptions.items():
        assert tuple(by_severity) == mnist_c.CORRUPTION_SEVERITIES[name] and len(by_severity) == 1, name
        (severity,) = by_severity
        np.testing.assert_array_equal(
            by_severity[severity], mnist_c.corrupt_images(images, name, severity, seed=0), err_msg=name
        )
    assert suite.corruptions["shot_noise"].keys() == {5} and suite.corruptions["canny_edges"].keys() == {1}
    assert len(list(suite.items())) == 5 + 15


def test_colour_32x32_images_get_cifar10_c_with_five_severities_each() -> None:
    images = photo_like(2)
    suite = build_corruption_suite(images, dataset_key="my-photos", seed=0)
    assert suite.name == "cifar10-c"
    assert tuple(suite.corruptions) == tuple(cifar10_c.CORRUPTION_SEVERITIES) == CORRUPTION_NAMES
    assert tuple(suite.gaussian) == (0.04, 0.06, 0.08, 0.09, 0.10)
    for name, by_severity in suite.corruptions.items():
        assert tuple(by_severity) == (1, 2, 3, 4, 5), name
        for severity, result in by_severity.items():
            # cifar10-c and imagenet-c-lowres share the names: the arrays tell which suite made them.
            np.testing.assert_array_equal(
                result, cifar10_c.corrupt_images(images, name, severity, seed=0), err_msg=f"{name} {severity}"
            )
    assert len(list(suite.items())) == 5 + 15 * 5


def test_grey_28x28_suite_keeps_shape_dtype_and_is_deterministic() -> None:
    images = digit_like(3)
    state_before = np.random.get_state()[1].copy()
    suite = build_corruption_suite(
        images, dataset_key="mnist", seed=0, suite=LOWRES, corruption_names=FEW_NAMES
    )
    np.testing.assert_array_equal(np.random.get_state()[1], state_before)  # global RNG left alone
    assert suite.name == LOWRES
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
    again = build_corruption_suite(
        images, dataset_key="mnist", seed=0, suite=LOWRES, corruption_names=FEW_NAMES[::-1]
    )
    other_seed = build_corruption_suite(
        images, dataset_key="mnist", seed=1, suite=LOWRES, corruption_names=("impulse_noise",)
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
    result = corrupt_images(images, "contrast", 5, seed=0, suite=LOWRES)
    assert result.shape == (2, 8, 8, 3) and result.dtype == np.uint8
    # contrast 5 keeps 5 % of the deviation from the mean: the spread collapses at the original size too
    assert result.astype(float).std() < 0.3 * images.astype(float).std()


def test_all_fifteen_corruptions_on_two_colour_images() -> None:
    images = photo_like(2)
    suite = build_corruption_suite(images, dataset_key="cifar10", seed=0, suite=LOWRES)
    assert suite.name == LOWRES
    assert tuple(suite.corruptions) == CORRUPTION_NAMES
    for name, by_severity in suite.corruptions.items():
        strongest = by_severity[5]
        assert strongest.shape == images.shape and strongest.dtype == np.uint8, name
        assert np.abs(strongest.astype(float) - images).mean() > 1.0, name
    assert len(list(suite.items())) == 5 + 15 * 5
    np.testing.assert_array_equal(
        suite.corruptions["contrast"][5], imagenet_c_lowres.corrupt_images(images, "contrast", 5, seed=0)
    )


def test_cache_hit_returns_identical_arrays_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = digit_like(2)
    names = ("contrast", "pixelate")
    first = build_corruption_suite(
        images, dataset_key="mnist", seed=0, cache_dir=tmp_path, suite=LOWRES, corruption_names=names
    )
    (cache_file,) = tmp_path.glob("*.npz")
    assert cache_file.name.startswith(f"corruptions-{LOWRES}-mnist-x")
    assert "-seed0-" in cache_file.name
    modified = cache_file.stat().st_mtime_ns

    with monkeypatch.context() as patch:
        calls = record_computation(patch)
        cached = build_corruption_suite(
            images, dataset_key="mnist", seed=0, cache_dir=tmp_path, suite=LOWRES, corruption_names=names
        )
        assert calls == [], "a cached suite was recomputed"
        # The stand-ins sit on the path a cache miss takes, so the empty log above means something.
        build_corruption_suite(
            images,
            dataset_key="mnist",
            seed=5,
            cache_dir=tmp_path / "miss",
            suite=LOWRES,
            corruption_names=names,
        )
        assert calls == ["gaussian"] + [
            f"{name} {level}" for name in names for level in CORRUPTION_SEVERITIES
        ]
    assert cache_file.stat().st_mtime_ns == modified
    assert cached.name == LOWRES
    for c, result in first.gaussian.items():
        np.testing.assert_array_equal(cached.gaussian[c], result)
    for name in names:
        for severity in CORRUPTION_SEVERITIES:
            np.testing.assert_array_equal(
                cached.corruptions[name][severity], first.corruptions[name][severity]
            )

    # A different seed or different test images are different cache entries.
    build_corruption_suite(
        images, dataset_key="mnist", seed=1, cache_dir=tmp_path, suite=LOWRES, corruption_names=names
    )
    build_corruption_suite(
        images[:1], dataset_key="mnist", seed=0, cache_dir=tmp_path, suite=LOWRES, corruption_names=names
    )
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert not list(tmp_path.glob(".tmp-*"))


def test_suite_is_part_of_the_cache_key_and_its_name_survives_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = photo_like(2)
    names = ("contrast", "pixelate")
    built = {
        suite: build_corruption_suite(
            images, dataset_key="cifar10", cache_dir=tmp_path, suite=suite, corruption_names=names
        )
        for suite in ("cifar10-c", LOWRES)
    }
    files = sorted(path.name for path in tmp_path.glob("*.npz"))
    assert len(files) == 2
    assert files[0].startswith("corruptions-cifar10-c-cifar10-x")
    assert files[1].startswith(f"corruptions-{LOWRES}-cifar10-x")
    # Same names, different parameters: one suite's cache must never answer for the other.
    assert not np.array_equal(
        built["cifar10-c"].corruptions["contrast"][5], built[LOWRES].corruptions["contrast"][5]
    )
    digits = digit_like(2)
    built["mnist-c"] = build_corruption_suite(
        digits, dataset_key="mnist", cache_dir=tmp_path, corruption_names=("fog",)
    )
    assert len(list(tmp_path.glob("corruptions-mnist-c-mnist-x*.npz"))) == 1

    with monkeypatch.context() as patch:
        calls = record_computation(patch)
        cached = {
            suite: build_corruption_suite(
                images, dataset_key="cifar10", cache_dir=tmp_path, suite=suite, corruption_names=names
            )
            for suite in ("cifar10-c", LOWRES)
        }
        cached["mnist-c"] = build_corruption_suite(
            digits, dataset_key="mnist", cache_dir=tmp_path, corruption_names=("fog",)
        )
        assert calls == []
    for suite, result in cached.items():
        assert result.name == suite
        for name, by_severity in built[suite].corruptions.items():
            assert cached[suite].corruptions[name].keys() == by_severity.keys()
            for severity, expected in by_severity.items():
                np.testing.assert_array_equal(cached[suite].corruptions[name][severity], expected)


def test_corruption_severities_narrow_every_corruption() -> None:
    images = photo_like(2)
    names = ("contrast", "pixelate")
    full = build_corruption_suite(images, dataset_key="cifar10", suite="cifar10-c", corruption_names=names)
    narrow = build_corruption_suite(
        images, dataset_key="cifar10", suite="cifar10-c", corruption_names=names, corruption_severities=(2, 5)
    )
    assert tuple(narrow.gaussian) == tuple(full.gaussian)  # Gaussian levels are not narrowed
    for name in names:
        assert tuple(narrow.corruptions[name]) == (2, 5)
        for severity in (2, 5):
            np.testing.assert_array_equal(
                narrow.corruptions[name][severity], full.corruptions[name][severity]
            )


def test_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    images = digit_like(2)
    first = build_corruption_suite(
        images, dataset_key="mnist", cache_dir=tmp_path, suite=LOWRES, corruption_names=("pixelate",)
    )
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    rebuilt = build_corruption_suite(
        images,
        dataset_key="mnist",
        cache_dir=tmp_path,
        suite=LOWRES,
        corruption_names=("pixelate",),
        progress=True,
    )
    np.testing.assert_array_equal(rebuilt.corruptions["pixelate"][2], first.corruptions["pixelate"][2])
    assert os.path.getsize(cache_file) > 100


def test_bad_arguments_are_refused() -> None:
    images = digit_like(1)
    with pytest.raises(ValueError, match="unknown corruption"):
        build_corruption_suite(images, dataset_key="mnist", suite=LOWRES, corruption_names=("rain",))
    with pytest.raises(ValueError, match="expected uint8"):
        build_corruption_suite(images.astype(np.float32), dataset_key="mnist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt_images(images, "contrast", 6)


def test_unknown_suite_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown corruption suite 'mnist'") as raised:
        build_corruption_suite(digit_like(1), dataset_key="mnist", suite="mnist")
    for name in SUITE_NAMES:
        assert name in str(raised.value)


@pytest.mark.parametrize(
    ("images", "suite", "name"),
    [
        (digit_like(1), "mnist-c", "contrast"),  # an ImageNet-C name on MNIST-C
        (digit_like(1), None, "pixelate"),  # the same through the shape's default suite
        (photo_like(1), "cifar10-c", "shear"),  # an MNIST-C name on CIFAR-10-C
        (photo_like(1), LOWRES, "canny_edges"),
    ],
)
def test_a_corruption_of_another_suite_is_refused_naming_the_suite(
    images: np.ndarray, suite: str | None, name: str
) -> None:
    expected_suite = suite or default_suite_name(images.shape[1:])
    with pytest.raises(ValueError, match=rf"unknown corruption\(s\) {name} for suite {expected_suite} "):
        build_corruption_suite(images, dataset_key="any", suite=suite, corruption_names=(name,))
