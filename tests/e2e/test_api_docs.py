"""/api/docs in chromium: swagger-ui starts under the pages' Content-Security-Policy, shows the API,
and the page asks nothing of any other origin (issue 13, item 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import BROWSER_TESTS, wait_for_js
from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http

pytestmark = BROWSER_TESTS


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`aqpl serve --no-worker`: the docs need no worker (and starting one imports torch)."""
    data_dir: Path = tmp_path_factory.mktemp("docs")
    env = aqpl_env(data_dir, log_level="warning")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    port = free_port()
    with aqpl_process(["serve", "--no-worker", f"--port={port}"], env, data_dir / "serve.log"):
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/api/v1/health")
        yield base_url


def test_swagger_ui_runs_under_the_csp_from_our_own_origin(browser: Any, api_only: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    try:
        response = page.goto(f"{api_only}/api/docs")
        assert response is not None and response.status == 200
        wait_for_js(page, "document.querySelector('.swagger-ui .info .title')?.textContent.includes('AQPL')")
        wait_for_js(page, "document.querySelectorAll('.opblock').length > 10")
    finally:
        context.close()
    origin = urlsplit(api_only).netloc
    foreign = [url for url in requested if not url.startswith("data:") and urlsplit(url).netloc != origin]
    assert not foreign, f"requests to other origins: {foreign}"
    assert not problems, f"errors in the page (a CSP refusal among them?): {problems}"
