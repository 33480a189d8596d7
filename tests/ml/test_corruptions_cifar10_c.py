"""CIFAR-10-C port: contract, determinism, the reference's parameters, severity order and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from worker.ml.corruptions import cifar10_c
from worker.ml.corruptions.cifar10_c import (
    CORRUPTION_SEVERITIES,
    GAUSSIAN_SEVERITIES,
    IMPLEMENTATION_VERSION,
    SUITE_NAME,
    corrupt_images,
)

NAMES = tuple(CORRUPTION_SEVERITIES)
ALL_SETS = [(name, severity) for name, levels in CORRUPTION_SEVERITIES.items() for severity in levels]
CIFAR_SUBSET = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-subset.npz"

Images = npt.NDArray[np.uint8]


def photo_like(count: int, *, seed: int = 0, top: float = 255.0) -> Images:
    """Colour gradients, stripes, a random square and mild noise: every corruption alters these."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = []
    for index in range(count):
        red = 60 + 120 * xx + 20 * np.sin(6 * yy + index)
        green = 70 + 110 * yy
        blue = 150 - 80 * xx * yy + 30 * ((xx * 8 + index).astype(int) % 2)
        image = np.stack([red, green, blue], axis=-1)
        cy, cx = rng.integers(8, 24, size=2)
        image[cy - 5 : cy + 5, cx - 5 : cx + 5] = rng.uniform(20, 230, size=3)
        image += rng.normal(0, 6, size=image.shape)
        images.append(image * (top / 255.0))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def grey(count: int, value: int = 128) -> Images:
    return np.full((count, 32, 32, 3), value, dtype=np.uint8)


def mean_change(corrupted: Images, clean: Images) -> float:
    return float(np.abs(corrupted.astype(np.float64) - clean).mean())


def test_contract_constants() -> None:
    assert SUITE_NAME == "cifar10-c"
    assert isinstance(IMPLEMENTATION_VERSION, int)
    assert NAMES == (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    )
    assert all(levels == (1, 2, 3, 4, 5) for levels in CORRUPTION_SEVERITIES.values())
    assert GAUSSIAN_SEVERITIES == (0.04, 0.06, 0.08, 0.09, 0.10)


@pytest.mark.parametrize(("name", "severity"), ALL_SETS)
def test_every_set_is_deterministic_independent_and_leaves_global_rng_alone(name: str, severity: int) -> None:
    clean = photo_like(3)
    np.random.seed(1234)
    global_before = np.random.get_state(legacy=False)
    first = corrupt_images(clean, name, severity, seed=5)
    global_after = np.random.get_state(legacy=False)
    assert global_after["state"]["pos"] == global_before["state"]["pos"]
    np.testing.assert_array_equal(global_after["state"]["key"], global_before["state"]["key"])

    assert first.shape == clean.shape
    assert first.dtype == np.uint8
    assert 0 < first.mean() < 255  # neither blown out nor black
    assert not np.array_equal(first, clean)  # every corruption alters these images at every severity

    np.random.seed(99)  # the global generator's state must not matter
    np.testing.assert_array_equal(corrupt_images(clean, name, severity, seed=5), first)

    # Image 1 keeps its output when its neighbours change: the draws depend on its index, not the batch.
    neighbours = photo_like(3, seed=1)
    mixed = np.stack([neighbours[0], clean[1], neighbours[2]])
    np.testing.assert_array_equal(corrupt_images(mixed, name, severity, seed=5)[1], first[1])


RANDOM_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
)


@pytest.mark.parametrize("name", RANDOM_CORRUPTIONS)
def test_seed_and_image_index_change_the_draws(name: str) -> None:
    clean = photo_like(1)
    twice = np.concatenate([clean, clean])
    out = corrupt_images(twice, name, 3, seed=0)
    assert not np.array_equal(out[0], out[1])  # same pixels, different index
    assert not np.array_equal(corrupt_images(clean, name, 3, seed=1)[0], out[0])


def test_empty_batch() -> None:
    assert corrupt_images(np.zeros((0, 32, 32, 3), np.uint8), "fog", 1, seed=0).shape == (0, 32, 32, 3)


# Severity order, checked as the mean absolute change from the clean image over 16 images:
# - strictly increasing at every step where the reference's parameters all move the same way: the
#   three noises, defocus, zoom, snow, fog, brightness, contrast, JPEG;
# - motion_blur: only 1 < 3 < 5. Severities 3 -> 4 go from (radius 6, σ 2) to (8, 2), a change smaller
#   than the spread from each image's random angle;
# - pixelate: only 1 < 3 < 5. Shrinking to 28 vs 27 pixels differ by how the blocks fall on the grid
#   more than by their size (test_pixelate_block_size checks the sizes themselves);
# - glass_blur: one-pass severities (1-3) < two-pass severities (4, 5). Within those groups CIFAR's σ
#   (0.05..0.4 px) barely blurs and is not ordered across groups (0.4 at 3, 0.25 at 4);
# - not checked: frost (the image weight falls while the frost weight rises, so the change is not
#   monotone) and elastic_transform (severity 1 has the largest affine jitter and no elastic field;
#   higher severities trade jitter for displacement).
STRICTLY_ORDERED = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "zoom_blur",
    "snow",
    "fog",
    "brightness",
    "contrast",
    "jpeg_compression",
)


def severity_changes(name: str, clean: Images) -> list[float]:
    return [mean_change(corrupt_images(clean, name, severity, seed=0), clean) for severity in range(1, 6)]


@pytest.mark.parametrize("name", STRICTLY_ORDERED)
def test_change_grows_with_every_severity(name: str) -> None:
    changes = severity_changes(name, photo_like(16))
    assert all(later > earlier for earlier, later in itertools.pairwise(changes)), changes


@pytest.mark.parametrize("name", ["motion_blur", "pixelate"])
def test_change_grows_from_severity_1_to_3_to_5(name: str) -> None:
    changes = severity_changes(name, photo_like(16))
    assert changes[0] < changes[2] < changes[4], changes


def test_glass_blur_two_passes_change_more_than_one() -> None:
    changes = severity_changes("glass_blur", photo_like(16))
    assert max(changes[:3]) < min(changes[3:]), changes


# ---- Parameter checks: each fails if a severity's constant were ImageNet-C's or otherwise wrong ----


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_noise_sigma(severity: int) -> None:
    clean = grey(8)  # mid-grey: clipping at 0 or 255 is > 5σ away
    noise = corrupt_images(clean, "gaussian_noise", severity, seed=0).astype(np.float64) - clean
    expected = 255 * GAUSSIAN_SEVERITIES[severity - 1]
    assert abs(noise.std() - expected) < 0.05 * expected


@pytest.mark.parametrize(("severity", "rate"), [(1, 500), (3, 100), (5, 50)])
def test_shot_noise_rate(severity: int, rate: int) -> None:
    clean = grey(8)
    noise = corrupt_images(clean, "shot_noise", severity, seed=0).astype(np.float64) - clean
    expected = 255 * np.sqrt((128 / 255) / rate)  # Poisson(x·c)/c has variance x/c
    assert abs(noise.std() - expected) < 0.05 * expected


@pytest.mark.parametrize(("severity", "amount"), [(1, 0.01), (3, 0.03), (5, 0.07)])
def test_impulse_noise_amount(severity: int, amount: float) -> None:
    out = corrupt_images(grey(8), "impulse_noise", severity, seed=0)
    salt, pepper = np.mean(out == 255), np.mean(out == 0)
    tolerance = 5 * np.sqrt(amount * (1 - amount) / out.size)
    assert abs(salt + pepper - amount) < tolerance
    assert abs(salt - pepper) < tolerance  # half salt, half pepper


@pytest.mark.parametrize(("severity", "c"), [(1, 0.05), (2, 0.1), (3, 0.15), (4, 0.2), (5, 0.3)])
def test_brightness_raises_value_by_c_then_truncates(severity: int, c: float) -> None:
    clean = photo_like(4, top=170)  # V + 0.3·255 stays below 255: no clipping
    out = corrupt_images(clean, "brightness", severity, seed=0)
    raised = out.max(axis=-1).astype(np.float64) - clean.max(axis=-1)  # HSV value = max channel
    # np.uint8 truncates: V + 12.75 -> V + 12 at severity 1 (rounding would give 13).
    assert np.all(raised <= 255 * c + 1e-6)
    assert np.all(raised > 255 * c - 1 - 1e-6)


@pytest.mark.parametrize(("severity", "c"), [(1, 0.75), (2, 0.5), (3, 0.4), (4, 0.3), (5, 0.15)])
def test_contrast_shrinks_each_channel_std_by_c(severity: int, c: float) -> None:
    clean = photo_like(4)
    out = corrupt_images(clean, "contrast", severity, seed=0)
    std_in = clean.std(axis=(1, 2))
    std_out = out.astype(np.float64).std(axis=(1, 2))
    np.testing.assert_allclose(std_out, c * std_in, atol=0.6)  # truncation adds at most ~0.3
    np.testing.assert_allclose(out.mean(axis=(1, 2)), clean.mean(axis=(1, 2)) - 0.5, atol=0.6)


@pytest.mark.parametrize(("severity", "side"), [(1, 30), (2, 28), (3, 27), (4, 24), (5, 20)])
def test_pixelate_block_size(severity: int, side: int) -> None:
    noise = np.random.default_rng(3).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    for image in corrupt_images(noise, "pixelate", severity, seed=0):
        # One distinct row (and column) of pixels per row (column) of the downsampled image.
        assert np.unique(image, axis=0).shape[0] == side
        assert np.unique(image, axis=1).shape[1] == side


def test_glass_blur_shuffle_matches_the_reference_loop() -> None:
    """The vectorised pass equals make_cifar_c.py's loop, including its copy-not-swap on views."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    offsets = rng.integers(-1, 1, size=(30, 30, 2))
    expected = image.copy()
    draws = iter(offsets.reshape(-1, 2))
    for h in range(31, 1, -1):
        for w in range(31, 1, -1):
            dx, dy = next(draws)
            h_prime, w_prime = h + dy, w + dx
            expected[h, w], expected[h_prime, w_prime] = expected[h_prime, w_prime], expected[h, w]
    np.testing.assert_array_equal(cifar10_c._shuffle_pass(image, offsets), expected)


def test_motion_blur_matches_imagecorruptions() -> None:
    """Our ImageMagick emulation is imagecorruptions-imaug's `_motion_blur`, the one the brief names."""
    from imagecorruptions.corruptions import _motion_blur as library_motion_blur

    image = photo_like(1)[0]
    for radius, sigma, angle in [(6, 1.0, -40.0), (9, 2.5, 30.0), (14, 12.0, -100.0)]:
        expected = library_motion_blur(image, radius=radius, sigma=sigma, angle=angle)
        ours = cifar10_c._motion_blur(image.astype(np.float64), radius, sigma, angle)
        np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_frost_pictures_are_the_packaged_ones() -> None:
    pictures = cifar10_c._frost_pictures()
    assert len(pictures) == 6
    # A fifth of each picture still leaves room for a random 32x32 crop.
    assert all(picture.shape[0] > 32 and picture.shape[1] > 32 for picture in pictures)


# ---- Bad input ----


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 28, 28, 3), np.uint8),
        np.zeros((2, 32, 32, 1), np.uint8),
        np.zeros((32, 32, 3), np.uint8),
        np.zeros((2, 32, 32, 3), np.float32),
    ],
)
def test_bad_images_raise(images: npt.NDArray[np.generic]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        corrupt_images(images, "fog", 1, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True])
def test_bad_severity_raises(severity: object) -> None:
    with pytest.raises(ValueError, match="severity"):
        corrupt_images(grey(1), "fog", severity, seed=0)  # type: ignore[arg-type]


def test_bad_name_and_seed_raise() -> None:
    with pytest.raises(ValueError, match="unknown CIFAR-10-C corruption"):
        corrupt_images(grey(1), "speckle_noise", 1, seed=0)  # not one of the 15
    with pytest.raises(ValueError, match="seed"):
        corrupt_images(grey(1), "fog", 1, seed=-1)


# ---- Real CIFAR-10 images ----


def test_real_cifar_images() -> None:
    if not CIFAR_SUBSET.is_file():
        pytest.skip(f"{CIFAR_SUBSET} is absent (real CIFAR-10 images; the synthetic tests cover the rest)")
    with np.load(CIFAR_SUBSET) as archive:
        clean = archive["x_test"][:4]
    for name in NAMES:
        mild = corrupt_images(clean, name, 1, seed=0)
        strong = corrupt_images(clean, name, 5, seed=0)
        assert mild.shape == strong.shape == clean.shape
        assert not np.array_equal(mild, clean)
        if name in STRICTLY_ORDERED:
            assert mean_change(strong, clean) > mean_change(mild, clean), name
