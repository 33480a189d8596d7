"""The lead's pages in chromium against a real server and worker: create a project on digits, watch
it become ready, run a round (answers come from annotators through the API), close it, download
the new checkpoint; and the annotators, checkpoints and API token pages."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import BROWSER_TESTS, READY_TIMEOUT, SCREENSHOTS, Server, sign_in, wait_for_js

pytestmark = BROWSER_TESTS


@pytest.fixture
def lead_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def text_of(page: Any, selector: str) -> str:
    return str(page.evaluate(f"document.querySelector({selector!r})?.textContent ?? ''"))


def wait_for_text(page: Any, selector: str, expected: str, *, timeout: float = 30.0) -> None:
    wait_for_js(
        page,
        f"(document.querySelector({selector!r})?.textContent ?? '').includes({expected!r})",
        timeout=timeout,
    )


def answer_every_task(server: Server, username: str, project_id: int, sigma_index: int) -> int:
    """Answer all of the project's tasks open to `username` through the API; returns how many."""
    answered = 0
    with server.api(username) as api:
        while True:
            response = api.post("/tasks/next", params={"project_id": project_id})
            if response.status_code == 204:
                return answered
            assert response.status_code == 200, response.text
            task = response.json()
            stored = api.post(
                f"/tasks/{task['id']}/annotation",
                json={"sigma_index": sigma_index, "seconds": 2.5},
                headers={"Idempotency-Key": f"{username}-{task['id']}"},
            )
            assert stored.status_code == 201, stored.text
            answered += 1


def fill_tiny_digits_project(page: Any, name: str) -> None:
    page.fill("#f-name", name)
    page.select_option("#f-dataset-format", "digits")
    page.fill("#f-dataset-train_limit", "100")
    page.fill("#f-dataset-test_limit", "40")
    page.fill("#f-draws", "4")
    page.fill("#f-budget", "2")
    page.fill("#f-overlap", "2")
    page.fill("#f-epochs", "1")
    page.fill("#f-finetune_epochs", "1")
    page.fill("#f-batch_size", "32")
    page.uncheck("input[name=auto_close]")
    page.fill("#f-evaluation-test_limit", "40")
    for box in page.query_selector_all("input[name=corruption]"):
        box.set_checked(box.get_attribute("value") == "gaussian_noise")
    for box in page.query_selector_all("input[name=severity]"):
        box.set_checked(box.get_attribute("value") == "1")


def test_lead_creates_a_project_runs_a_round_and_downloads_the_checkpoint(
    server: Server, lead_page: Any, tmp_path: Path
) -> None:
    page = lead_page
    sign_in(page, server, "lead1")
    assert page.url.rstrip("/") == server.base_url, "a lead lands on the dashboard"
    page.click("#new-project")
    page.wait_for_url("**/projects/new")

    # The API's validation messages appear next to the fields they concern.
    page.fill("#f-name", "outside the import root")
    page.select_option("#f-dataset-format", "mnist")
    page.fill("#f-dataset-path", "/etc")
    page.click("#create-project")
    wait_for_text(page, "#e-dataset-path", "import root")
    page.screenshot(path=str(SCREENSHOTS / "project-new.png"))
    page.select_option("#f-dataset-format", "digits")
    for box in page.query_selector_all("input[name=severity]"):
        box.uncheck()
    page.click("#create-project")
    wait_for_js(page, "document.getElementById('e-evaluation-severities').textContent.length > 0")
    assert page.url.endswith("/projects/new"), "nothing was created"

    fill_tiny_digits_project(page, "e2e digits")
    page.click("#create-project")
    wait_for_js(
        page,
        "/\\/projects\\/\\d+$/.test(location.pathname) "
        "|| document.querySelector('.field.invalid, #form-error:not([hidden])')",
    )
    assert page.evaluate("location.pathname").startswith("/projects/") and page.url[-1].isdigit(), (
        page.evaluate(
            "[...document.querySelectorAll('.field.invalid, #form-error')]"
            ".map(e => e.outerHTML.slice(0, 300)).join('\\n')"
        )
    )
    project_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    captions = set()
    deadline = time.monotonic() + READY_TIMEOUT
    while text_of(page, "#project-status") != "ready" and time.monotonic() < deadline:
        captions.add(text_of(page, "#step-caption"))
        time.sleep(0.2)
    assert text_of(page, "#project-status") == "ready"
    assert {caption.split(" ")[0] for caption in captions} & {"Importing", "Pretraining", "Evaluating"}, (
        captions
    )
    wait_for_text(page, "#rounds-table", "pretraining")
    assert text_of(page, "#stat-train").startswith("100")

    page.click("#launch-round")
    wait_for_text(page, "#round-state", "annotating", timeout=READY_TIMEOUT)
    wait_for_text(page, "#answer-caption", "0 / 4 queries complete")
    assert page.is_enabled("#close-round") and not page.is_enabled("#launch-round")
    wait_for_js(page, "document.querySelectorAll('#thumbs-excessive .thumb').length === 2")
    assert page.evaluate("document.querySelectorAll('#thumbs-deficient .thumb').length") == 2

    assert answer_every_task(server, "ann1", project_id, 40) == 4
    assert answer_every_task(server, "ann2", project_id, 44) == 4
    wait_for_text(page, "#answer-caption", "4 / 4 queries complete · 8 answers from 2 annotators")
    wait_for_text(page, "#thumbs-excessive", "answers (2/2): 0.40, 0.44")
    page.screenshot(path=str(SCREENSHOTS / "project.png"), full_page=True)

    page.click("#close-round")
    wait_for_text(page, "#round-state", "published", timeout=READY_TIMEOUT)
    wait_for_js(
        page, "document.querySelector('#rounds-table tr[data-round=\"1\"] a.checkpoint-link') !== null"
    )
    assert page.evaluate("document.querySelectorAll('svg.accuracy-chart polyline.series').length") >= 1
    assert page.evaluate("document.querySelectorAll('svg.sigma-histogram rect.bar-after').length") >= 1

    with page.expect_download() as download_info:
        page.click("#rounds-table tr[data-round='1'] a.checkpoint-link")
    download = download_info.value
    saved = tmp_path / "round_001.safetensors"
    download.save_as(saved)
    with server.api("lead1") as api:
        latest = api.get(f"/projects/{project_id}/checkpoints/latest").json()
    assert latest["round_number"] == 1
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == latest["sha256"]
    page.screenshot(path=str(SCREENSHOTS / "project-published.png"), full_page=True)

    page.goto(f"{server.base_url}/")
    wait_for_js(
        page, f"document.querySelector('#projects-table tr[data-project-id=\"{project_id}\"]') !== null"
    )
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))

    page.goto(f"{server.base_url}/checkpoints")
    wait_for_text(page, "#checkpoints-table", latest["sha256"][:16])


def test_a_dataset_uploaded_from_the_form_is_imported(server: Server, lead_page: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    archive = tmp_path / "squares64.npz"
    labels = np.arange(24) % 2
    images = rng.integers(0, 60, size=(24, 64, 64, 3), dtype=np.uint8)
    images[labels == 1, 16:48, 16:48, :] = 220  # class 1: a bright square
    np.savez(archive, x_train=images[:16], y_train=labels[:16], x_test=images[16:], y_test=labels[16:])
    page = lead_page
    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/projects/new")
    fill_tiny_digits_project(page, "e2e upload 64x64")
    page.select_option("#f-dataset-format", "npz")
    page.check("input[name=source][value=upload]")
    page.click("#create-project")
    wait_for_text(page, "#e-upload", "Choose the file")
    page.set_input_files("#f-upload", str(archive))
    page.click("#create-project")
    wait_for_js(page, "/^\\/projects\\/\\d+$/.test(location.pathname)")
    wait_for_text(page, "#project-status", "ready", timeout=READY_TIMEOUT)
    wait_for_text(page, "#stats", "64×64×3")
    assert text_of(page, "#stat-train").startswith("16")


def invalid_fields(page: Any) -> list[str]:
    return list(page.evaluate("[...document.querySelectorAll('.field.invalid')].map(e => e.dataset.field)"))


def test_the_new_project_form_shows_each_api_error_at_the_field_it_names(
    server: Server, lead_page: Any
) -> None:
    """The form places the API's 422 messages by their `loc`, not by what the message says."""
    (server.data_dir / "imports").mkdir(exist_ok=True)
    (server.data_dir / "imports" / "notes.npz").write_text("these are not arrays\n")
    page = lead_page
    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/projects/new")
    page.fill("#f-name", "misplaced")
    page.fill("#f-seed", "3000000000")  # the form sets no maximum; the API's is 2**31 - 1
    page.click("#create-project")
    wait_for_text(page, "#e-seed", "2147483647")
    assert invalid_fields(page) == ["seed"] and page.is_hidden("#form-error")

    page.fill("#f-seed", "0")
    page.select_option("#f-dataset-format", "npz")
    page.fill("#f-dataset-path", "notes.npz")
    page.click("#create-project")
    wait_for_text(page, "#e-dataset-path", "notes.npz: not a readable .npz archive")
    assert invalid_fields(page) == ["dataset.path"] and page.is_hidden("#form-error")
    assert text_of(page, "#e-seed") == ""
    assert page.url.endswith("/projects/new"), "nothing was created"


def test_annotators_and_api_token_pages(server: Server, lead_page: Any) -> None:
    page = lead_page
    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/annotators")
    wait_for_js(page, "document.querySelector('#annotators-table tr[data-username=\"ann1\"]') !== null")
    page.fill("#u-username", "x")
    page.fill("#u-password", "long-enough-1")
    page.click("#create-user")
    wait_for_text(page, "#ue-username", "At least 2")
    page.fill("#u-username", "ann9")
    page.click("#create-user")
    wait_for_text(page, "#user-status", "Created annotator ann9")
    wait_for_js(page, "document.querySelector('#annotators-table tr[data-username=\"ann9\"]') !== null")
    page.fill("#u-username", "ann9")
    page.fill("#u-password", "long-enough-1")
    page.click("#create-user")
    wait_for_text(page, "#ue-username", "already exists")
    page.screenshot(path=str(SCREENSHOTS / "annotators.png"))

    page.goto(f"{server.base_url}/tokens")
    page.fill("#t-name", "e2e client")
    page.click("#create-token")
    token = wait_for_js(
        page,
        "document.getElementById('new-token').hidden ? '' "
        ": document.getElementById('new-token-value').textContent",
    )
    with server.api("lead1") as api:
        api.headers["Authorization"] = f"Bearer {token}"
        assert api.get("/projects").status_code == 403, "a checkpoints:read token cannot manage"
        assert api.get("/auth/me").json()["scopes"] == ["checkpoints:read"]
    page.click("#tokens-table button.danger")
    wait_for_text(page, "#tokens-table", "revoked")
    with server.api("lead1") as api:
        api.headers["Authorization"] = f"Bearer {token}"
        assert api.get("/auth/me").status_code == 401


def test_pages_need_a_session_and_sign_out_ends_it(server: Server, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{server.base_url}/checkpoints")
        assert "/login?next=%2Fcheckpoints" in page.url
        page.fill("input[name=username]", "lead1")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        assert "Wrong username or password" in text_of(page, "#login-error")
        page.fill("input[name=password]", "e2e-password-1")
        page.click("button[type=submit]")
        page.wait_for_url("**/checkpoints")
        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        assert cookies["aqpl_session"]["httpOnly"] and cookies["aqpl_session"]["sameSite"] == "Lax"
        assert not cookies["aqpl_csrf"]["httpOnly"]
        page.click("text=Sign out")
        wait_for_js(page, "location.pathname === '/login' && document.readyState === 'complete'")
        page.goto(f"{server.base_url}/")
        assert "/login" in page.url
    finally:
        context.close()

    annotator = browser.new_context().new_page()
    sign_in(annotator, server, "ann2")
    annotator.goto(f"{server.base_url}/")
    assert annotator.url.endswith("/annotate"), "annotators are sent to the annotation page"
    annotator.context.close()
