"""The browser's renderer (frontend/static/js/noise_render.js) against aqpl.noise_field.render_at_sigma.

No server: the module is served to chromium from the source tree through Playwright's router, and
run on arrays made here; its output must equal NumPy's to the grey level, ties included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aqpl.ladder import LADDER_MAX_INDEX
from aqpl.noise_field import noise_field, render_at_sigma
from tests.e2e.conftest import BROWSER_TESTS
from tests.support import REPO_ROOT

pytestmark = BROWSER_TESTS

STATIC = REPO_ROOT / "frontend" / "static"
ORIGIN = "http://aqpl.test"


@pytest.fixture
def module_page(browser: Any) -> Any:
    context = browser.new_context()
    page = context.new_page()

    def serve(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/":
            route.fulfill(body="<!doctype html><title>harness</title>", content_type="text/html")
            return
        file = STATIC / path.removeprefix("/static/")
        route.fulfill(body=file.read_bytes(), content_type="text/javascript")

    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    yield page
    context.close()


def render_in_browser(
    page: Any, pixels: np.ndarray, epsilon: np.ndarray, sigma_indices: list[int]
) -> np.ndarray:
    values = page.evaluate(
        """async ([pixels, epsilon, sigmaIndices]) => {
            const render = await import("/static/js/noise_render.js");
            const unit = render.toUnitFloat(Uint8Array.from(pixels));
            const eps = Float32Array.from(epsilon);
            const out = (index) => render.renderValues(unit, eps, index, new Uint8Array(unit.length));
            return sigmaIndices.map((index) => Array.from(out(index)));
        }""",
        [pixels.ravel().tolist(), epsilon.ravel().astype(np.float64).tolist(), sigma_indices],
    )
    return np.asarray(values, dtype=np.uint8).reshape(len(sigma_indices), *pixels.shape)


def test_every_ladder_step_matches_numpy_exactly(module_page: Any) -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    image[0, :4, 0] = [0, 1, 254, 255]  # the ends of the range, where clipping happens
    epsilon = noise_field(image.shape, project_seed=3, example_index=11)
    indices = list(range(LADDER_MAX_INDEX + 1))
    browser_values = render_in_browser(module_page, image, epsilon, indices)
    for index in indices:
        np.testing.assert_array_equal(
            browser_values[index], render_at_sigma(image, epsilon, index), f"σ index {index}"
        )


def test_ties_round_half_to_even_like_numpy(module_page: Any) -> None:
    # x = 0 and σ = 0.5 make x + σ·ε = ε / 2 exactly; pick ε so that value·255 lands on k + 0.5.
    ties = []
    for k in range(0, 255):
        value = np.float32(np.float32(k + 0.5) / np.float32(255))
        if np.float32(value * np.float32(255)) == np.float32(k + 0.5):
            ties.append(np.float32(2) * value)
    assert len(ties) > 50, "too few exact ties to test"
    epsilon = np.asarray(ties, dtype=np.float32).reshape(1, -1, 1)
    image = np.zeros(epsilon.shape, dtype=np.uint8)
    expected = render_at_sigma(image, epsilon, 50)
    assert np.any(expected.astype(int) % 2 == 0) and np.any(
        expected != np.floor(np.asarray(ties) * 0.5 * 255)
    )
    np.testing.assert_array_equal(render_in_browser(module_page, image, epsilon, [50])[0], expected)


def test_grey_images_fill_rgb_and_alpha(module_page: Any) -> None:
    image = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4, 1)
    epsilon = noise_field(image.shape, project_seed=0, example_index=1)
    rgba = module_page.evaluate(
        """async ([pixels, epsilon]) => {
            const render = await import("/static/js/noise_render.js");
            const out = new Uint8ClampedArray(16 * 4);
            const unit = render.toUnitFloat(Uint8Array.from(pixels));
            render.renderRGBA(unit, Float32Array.from(epsilon), 1, 37, out);
            return Array.from(out);
        }""",
        [image.ravel().tolist(), epsilon.ravel().astype(np.float64).tolist()],
    )
    rgba_array = np.asarray(rgba, dtype=np.uint8).reshape(4, 4, 4)
    expected = render_at_sigma(image, epsilon, 37)[..., 0]
    for channel in range(3):
        np.testing.assert_array_equal(rgba_array[..., channel], expected)
    assert np.all(rgba_array[..., 3] == 255)


def test_sigma_outside_the_ladder_is_refused(module_page: Any) -> None:
    message = module_page.evaluate(
        """async () => {
            const render = await import("/static/js/noise_render.js");
            try { render.sigmaOf(91); return "accepted"; } catch (error) { return error.message; }
        }"""
    )
    assert "outside the ladder" in message
