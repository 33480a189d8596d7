"""The annotation page in chromium against a real server and worker: keyboard answers, the next task
without a page load, the canvas against the server's rendering, and the timings of the page."""

from __future__ import annotations

import io
import statistics
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aqpl.noise_field import noise_field
from tests.e2e.conftest import BROWSER_TESTS, SCREENSHOTS, AnnotatingRound, Server, sign_in, wait_for_js

pytestmark = BROWSER_TESTS


@pytest.fixture
def annotator_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_for_task(page: Any, *, other_than: str | None = None) -> str:
    """The id of the task on screen, once there is one (and it is not `other_than`)."""
    excluded = f"'{other_than}'" if other_than else "undefined"
    task_id: str = wait_for_js(
        page,
        "(() => { const id = document.getElementById('image-canvas').dataset.taskId; "
        f"return id && id !== {excluded} && id }})()",
    )
    return task_id


def test_annotator_answers_with_the_keyboard_and_the_next_task_needs_no_page_load(
    server: Server, annotator_page: Any, annotating_round: AnnotatingRound
) -> None:
    page = annotator_page
    sign_in(page, server, "ann1")
    assert page.url.endswith("/annotate"), "an annotator lands on the annotation page"
    first_task = wait_for_task(page)
    page_id = page.evaluate("window.aqplPageId")
    slider = page.locator("#sigma")
    assert page.evaluate("document.activeElement.id") == "sigma", "the slider has the focus for the keys"
    canvas_width = page.evaluate("document.getElementById('image-canvas').width")
    assert canvas_width >= 32 * 8, "a 32 px digit is drawn at least 8x"

    page.keyboard.press("End")
    assert slider.input_value() == "90"
    page.keyboard.press("Home")
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")
    assert slider.input_value() == "40"
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    assert slider.input_value() == "37"
    assert page.inner_text("#sigma-label") == "σ = 0.37"
    instruction = page.inner_text("#instruction")
    assert instruction.startswith(
        "Move the slider to the strongest noise at which you can still recognise the "
    )
    assert page.locator("#sigma-marker").is_hidden(), "the σ marker is off by default"
    assert "/ " in page.inner_text("#progress-text")

    page.keyboard.press("?")
    assert page.locator("#keys-dialog").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#keys-dialog").is_hidden()
    page.keyboard.press("z")
    assert page.get_attribute("#zoom-button", "aria-pressed") == "true"
    page.keyboard.press("z")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "annotate.png"))

    page.keyboard.press("Enter")
    second_task = wait_for_task(page, other_than=first_task)
    wait_for_js(page, "document.getElementById('status').textContent.includes('Saved σ = 0.37')")
    assert page.evaluate("window.aqplPageId") == page_id, "the next task came without a page load"
    assert page.input_value("#sigma") == "0", "a new task starts at σ = 0"

    with server.api("ann1") as api:
        task = api.get(f"/tasks/{first_task}").json()
    with server.api("lead1") as api:
        queries = api.get(f"/rounds/{annotating_round.round_id}/queries").json()
    answered = next(query for query in queries if query["id"] == task["query_id"])
    assert answered["answers"] == [37]

    # Two more answers by keyboard, to time submit -> next image on screen.
    for target in (5, 12):
        for _ in range(target):
            page.keyboard.press("ArrowRight")
        previous = page.get_attribute("#image-canvas", "data-task-id")
        page.keyboard.press("Enter")
        wait_for_js(
            page,
            "(() => { const c = document.getElementById('image-canvas'); "
            f"return c.dataset.taskId !== '{previous}' || !document.getElementById('empty').hidden }})()",
        )
    timings = page.evaluate("window.aqplTimings")
    next_image = timings["submitToNextImage"]
    assert next_image, "no submit -> next image time was recorded"
    print(f"\nsubmit -> next image on screen (ms): {[round(value, 1) for value in next_image]}")
    print(f"task download + decode (ms): {[round(value, 1) for value in timings['taskLoad']]}")
    print(f"loaded task -> on screen (ms): {[round(value, 1) for value in timings['showTask']]}")
    assert second_task != first_task


def test_a_lost_answer_is_retried_with_the_same_key_and_the_annotator_is_told(
    server: Server, annotator_page: Any, annotating_round: AnnotatingRound
) -> None:
    page = annotator_page
    sign_in(page, server, "ann3")
    task_id = wait_for_task(page)
    keys: list[str] = []

    def lose_the_first_response(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fetch()  # the server stores the answer...
            route.abort("connectionreset")  # ...and the answer to the browser is lost
        else:
            route.continue_()

    page.route(f"**/api/v1/tasks/{task_id}/annotation", lose_the_first_response)
    for _ in range(21):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    wait_for_js(page, "document.getElementById('status').textContent.includes('Connection lost')", timeout=10)
    status = wait_for_js(
        page,
        "(() => { const t = document.getElementById('status').textContent; "
        "return t.includes('Connection back') && t })()",
        timeout=15,
    )
    assert "σ = 0.21" in status
    assert len(keys) == 2 and keys[0] == keys[1], "the retry sends the same Idempotency-Key"
    with server.api("ann3") as api:
        query_id = api.get(f"/tasks/{task_id}").json()["query_id"]
    with server.api("lead1") as api:
        queries = api.get(f"/rounds/{annotating_round.round_id}/queries").json()
    answers = next(query for query in queries if query["id"] == query_id)["answers"]
    assert answers.count(21) == 1, f"the answer is stored once, not per attempt: {answers}"


BUSY = {
    "status": 503,
    "headers": {"Retry-After": "1", "Content-Type": "application/json"},
    "body": '{"detail": "The server is too busy right now; try again in a moment."}',
}
BUSY_STATUS = (
    "(() => { const s = document.getElementById('status'); "
    "return s.dataset.kind === 'busy' && s.textContent })()"
)


def test_a_busy_server_is_waited_out_with_the_same_key_and_a_quiet_note(
    server: Server, annotator_page: Any, annotating_round: AnnotatingRound
) -> None:
    """503 + Retry-After (the server's admission control) on the lease and on the answer: the page waits,
    says "busy, retrying" quietly, and sends the same request again — the answer with its key."""
    page = annotator_page
    leases: list[str] = []

    def busy_on_the_first_lease(route: Any) -> None:
        leases.append(route.request.url)
        if len(leases) == 1:
            route.fulfill(**BUSY)
        else:
            route.continue_()

    page.route("**/api/v1/tasks/next*", busy_on_the_first_lease)
    sign_in(page, server, "ann2")
    assert wait_for_js(page, BUSY_STATUS, timeout=10).startswith("Busy, retrying")
    task_id = wait_for_task(page)
    assert len(leases) >= 2, "the refused lease was asked for again"

    keys: list[str] = []

    def busy_on_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.fulfill(**BUSY)
        else:
            route.continue_()

    page.route(f"**/api/v1/tasks/{task_id}/annotation", busy_on_the_first_answer)
    for _ in range(13):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    note = wait_for_js(page, BUSY_STATUS, timeout=10)
    assert note.startswith("Busy, retrying") and "σ = 0.13" in note
    wait_for_js(page, "document.getElementById('status').textContent.includes('Saved σ = 0.13')", timeout=15)
    assert len(keys) == 2 and keys[0] == keys[1], "the retry sends the same Idempotency-Key"
    with server.api("ann2") as api:
        query_id = api.get(f"/tasks/{task_id}").json()["query_id"]
    with server.api("lead1") as api:
        queries = api.get(f"/rounds/{annotating_round.round_id}/queries").json()
    answers = next(query for query in queries if query["id"] == query_id)["answers"]
    assert answers.count(13) == 1, f"the answer is stored once: {answers}"


def _canvas_grey_levels(page: Any) -> np.ndarray:
    """The canvas sampled at the centre of every enlarged image pixel: H x W x 3."""
    values = page.evaluate(
        """() => {
            const canvas = document.getElementById('image-canvas');
            const scale = Number(canvas.dataset.scale);
            const width = canvas.width / scale, height = canvas.height / scale;
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            const out = [];
            for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
                const offset = ((y * scale + (scale >> 1)) * canvas.width + x * scale + (scale >> 1)) * 4;
                out.push(data[offset], data[offset + 1], data[offset + 2]);
            }
            return [height, width, out];
        }"""
    )
    height, width, flat = values
    return np.asarray(flat, dtype=np.int16).reshape(height, width, 3)


def test_canvas_pixels_equal_the_server_rendering(
    server: Server, annotator_page: Any, annotating_round: AnnotatingRound
) -> None:
    page = annotator_page
    sign_in(page, server, "ann2")
    with page.expect_response("**/renew", timeout=15_000) as renewed:  # a third of the 15 s lease
        wait_for_task(page)
    assert renewed.value.status == 200
    example_id = page.get_attribute("#image-canvas", "data-example-id")
    with server.api("ann2") as api:
        for sigma_index in (0, 9, 37, 64, 90):
            page.evaluate(f"window.aqplAnnotate.setSigma({sigma_index})")
            canvas = _canvas_grey_levels(page)
            response = api.get(f"/examples/{example_id}/render.png", params={"sigma_index": sigma_index})
            assert response.status_code == 200
            served = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)
            assert canvas.shape == served.shape
            difference = int(np.abs(canvas - served).max())
            assert difference <= 1, (
                f"σ index {sigma_index}: canvas differs from the server by {difference} grey levels"
            )
    # The preview strip: a click jumps to σ = 0.3.
    page.click(".preview[data-sigma-index='30']")
    assert page.input_value("#sigma") == "30"
    assert page.evaluate("document.activeElement.id") == "sigma"


def test_tablet_width_keeps_the_image_large_and_the_controls_reachable(
    server: Server, browser: Any, annotating_round: AnnotatingRound
) -> None:
    context = browser.new_context(viewport={"width": 768, "height": 1024})
    page = context.new_page()
    try:
        sign_in(page, server, "ann3")
        task_id = wait_for_task(page)
        assert page.evaluate("document.getElementById('image-canvas').width") >= 32 * 8
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            "no sideways scrolling"
        )
        for selector in ("#sigma", "#submit-button", "#skip-button", ".preview[data-sigma-index='90']"):
            assert page.locator(selector).is_visible()
        with page.expect_response(f"**/tasks/{task_id}/skip") as skipped:
            page.keyboard.press("s")
        assert skipped.value.json()["state"] == "skipped"
        wait_for_task(page, other_than=task_id)
        box = page.locator("#submit-button").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 1024, "Submit is on screen without scrolling"
        page.screenshot(path=str(SCREENSHOTS / "annotate-tablet.png"))
        page.keyboard.press("Tab")  # focus moves on from the slider and stays visible
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
    finally:
        context.close()


def test_render_step_of_a_64x64_image_takes_under_16_ms(server: Server, annotator_page: Any) -> None:
    page = annotator_page
    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/annotate")
    wait_for_js(
        page,
        "window.aqplAnnotate && "
        "(window.aqplAnnotate.state.current !== null || !document.getElementById('empty').hidden)",
    )
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    epsilon = noise_field((64, 64, 3), project_seed=0, example_index=1)
    page.evaluate(
        "([pixels, epsilon]) => "
        "window.aqplAnnotate.showSynthetic({width: 64, height: 64, channels: 3, pixels, epsilon, "
        "currentSigmaIndex: 30})",
        [pixels.ravel().tolist(), epsilon.ravel().astype(np.float64).tolist()],
    )
    assert page.inner_text("#instruction").endswith("still recognise what the image shows.")
    assert page.inner_text("#sigma-marker") == "model's current σ = 0.30", "shown when the project asks"
    page.evaluate("window.aqplTimings.renderStep.length = 0")
    page.focus("#sigma")
    for _ in range(3):  # by keyboard, as an annotator moves it: 90 steps up, 90 down
        page.keyboard.press("End")
        page.keyboard.press("Home")
    for _ in range(90):
        page.keyboard.press("ArrowRight")
    steps = page.evaluate("window.aqplTimings.renderStep")
    assert len(steps) >= 90
    median = statistics.median(steps)
    p95 = sorted(steps)[int(0.95 * (len(steps) - 1))]
    print(
        f"\n64x64x3 render step (ms): median {median:.2f}, p95 {p95:.2f}, "
        f"max {max(steps):.2f} over {len(steps)} steps"
    )
    assert median <= 16.0
