"""Browser tests: a real `aqpl serve` (API + worker, embedded SQLite and filesystem broker) on a free
port, driven by Debian's chromium through Playwright.

One server per test session: starting the worker (it imports torch) is the slow part.
Skipped with a reason when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db import create_db_engine, make_session_factory
from tests.support import REPO_ROOT, aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
# Every browser test module: skipped before the server starts when there is no browser to drive.
BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    ),
]
PASSWORD = "e2e-password-1"
USERS = (("lead1", "lead"), ("ann1", "annotator"), ("ann2", "annotator"), ("ann3", "annotator"))
# Tiny on purpose (2 shared CPU cores): 100 digits, one epoch, 4 draws, 2 queries per side, one
# corruption at one severity on 40 test images.
TINY_PROJECT: dict[str, Any] = {
    "dataset": {"format": "digits", "train_limit": 100, "test_limit": 40},
    "model": "small_cnn",
    "epochs": 1,
    "finetune_epochs": 1,
    "batch_size": 32,
    "draws": 4,
    "budget": 3,
    "overlap": 2,
    "auto_close": False,
    "evaluation": {"corruptions": ["gaussian_noise"], "severities": [1], "test_limit": 40},
}
READY_TIMEOUT = 240.0  # seconds: a project's import + pretraining + evaluation on a busy 2-core machine


@dataclass
class Server:
    base_url: str
    data_dir: Path
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def login(self, username: str) -> str:
        """A bearer token for `username` (cached)."""
        if username not in self.tokens:
            response = httpx.post(
                f"{self.base_url}/api/v1/auth/login",
                json={"username": username, "password": PASSWORD},
                timeout=30,
            )
            response.raise_for_status()
            self.tokens[username] = response.json()["access_token"]
        return self.tokens[username]

    def api(self, username: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {self.login(username)}"},
            timeout=30,
        )

    @contextmanager
    def database(self) -> Iterator[sessionmaker[Session]]:
        """Sessions on the server's own database (its embedded SQLite), to seed rows and read them back."""
        engine = create_db_engine(f"sqlite:///{self.data_dir / 'aqpl.sqlite3'}")
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("e2e-data")
    env = aqpl_env(data_dir, lease_seconds="15")  # short: the page renews every 5 s
    upgraded = run_aqpl(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    for username, role in USERS:
        created = run_aqpl(
            ["users", "create", username, "--role", role, "--password-stdin"], env, input_text=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
    port = free_port()
    log_path = data_dir / "serve.log"
    with aqpl_process(["serve", "--port", str(port)], env, log_path):
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/api/v1/health", timeout=90)
        yield Server(base_url=base_url, data_dir=data_dir, log_path=log_path)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_for_project(server: Server, project_id: int, *, status: str = "ready") -> dict[str, Any]:
    with server.api("lead1") as api:
        project: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal project
            project = api.get(f"/projects/{project_id}").json()
            if project["status"] == "failed":
                raise AssertionError(f"project failed: {project['error']}\n{server.log_tail()}")
            return bool(project["status"] == status)

        wait_until(reached, timeout=READY_TIMEOUT, interval=0.5, message=f"project {project_id} {status}")
        return project


def wait_for_round(
    server: Server, round_id: int, state: str, *, timeout: float = READY_TIMEOUT
) -> dict[str, Any]:
    with server.api("lead1") as api:
        current: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal current
            current = api.get(f"/rounds/{round_id}").json()
            if current["state"] == "failed":
                raise AssertionError(f"round failed: {current['error']}\n{server.log_tail()}")
            return bool(current["state"] == state)

        wait_until(reached, timeout=timeout, interval=0.5, message=f"round {round_id} {state}")
        return current


@dataclass(frozen=True)
class AnnotatingRound:
    project_id: int
    round_id: int
    queries: int


def open_first_round(server: Server, body: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
    """Create a project as lead1 (`body`: the request), wait until it is ready, open round 1 and wait
    until it annotates; returns (project id, round id, the round as the API reads it)."""
    with server.api("lead1") as api:
        created = api.post("/projects", json=body)
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        wait_for_project(server, project_id)
        launched = api.post(f"/projects/{project_id}/rounds")
        assert launched.status_code == 201, launched.text
        round_id = launched.json()["id"]
    return project_id, round_id, wait_for_round(server, round_id, "annotating")


@pytest.fixture(scope="session")
def annotating_round(server: Server) -> AnnotatingRound:
    """A digits project, made through the API, whose first round waits for answers."""
    started = time.monotonic()
    project_id, round_id, round_ = open_first_round(server, {"name": "e2e annotation", **TINY_PROJECT})
    print(f"annotating round ready after {time.monotonic() - started:.1f} s")
    return AnnotatingRound(project_id=project_id, round_id=round_id, queries=round_["counts"]["queries"])


@pytest.fixture
def page(browser: Any) -> Any:
    """A desktop-size page that accepts confirm() dialogs and fails its test on a JavaScript error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def sign_in(page: Any, server: Server, username: str) -> None:
    page.goto(f"{server.base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")


def wait_for_js(page: Any, expression: str, *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll a JS expression until it is truthy; returns its value.

    Page.evaluate goes through the DevTools protocol, which the pages' Content-Security-Policy
    (no eval) allows; Playwright's wait_for_function evaluates strings inside the page and does not.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = page.evaluate(expression)
        except Exception as error:  # a navigation replaced the page under the evaluation: ask again
            if "context was destroyed" not in str(error) and "navigat" not in str(error):
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {expression}")
        time.sleep(interval)
