"""The annotators page in chromium against a real server: an admin deactivates an account with the
page's controls, and that account's token stops working at once (issue 13, item 9)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BROWSER_TESTS, PASSWORD, Server, sign_in, wait_for_js
from tests.support import aqpl_env, run_aqpl

pytestmark = BROWSER_TESTS


@pytest.fixture
def admin_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.dialogs = dialogs
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def create_user(server: Server, username: str, role: str) -> None:
    created = run_aqpl(
        ["users", "create", username, "--role", role, "--password-stdin"],
        aqpl_env(server.data_dir),
        input_text=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr


def test_an_admin_deactivates_an_account_from_the_annotators_page(server: Server, admin_page: Any) -> None:
    create_user(server, "admin-e2e", "admin")
    create_user(server, "leaver", "annotator")
    token = server.login("leaver")
    me = f"{server.base_url}/api/v1/auth/me"
    assert httpx.get(me, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200

    page = admin_page
    sign_in(page, server, "admin-e2e")
    page.goto(f"{server.base_url}/annotators")
    row = "#accounts-table tr[data-username='leaver']"
    wait_for_js(page, f"document.querySelector({row!r} + \" button[data-action='deactivate']\")")
    page.click(f"{row} button[data-action='deactivate']")
    wait_for_js(page, f"document.querySelector({row!r})?.dataset.active === 'false'")
    assert "deactivated" in page.inner_text(row)
    assert "Deactivate leaver?" in page.dialogs[0]
    assert "leaver is deactivated" in page.inner_text("#accounts-status")

    assert httpx.get(me, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 401
    login = httpx.post(
        f"{server.base_url}/api/v1/auth/login", json={"username": "leaver", "password": PASSWORD}, timeout=30
    )
    assert login.status_code == 401

    # And back: the page's Reactivate button lets them sign in again.
    page.click(f"{row} button[data-action='reactivate']")
    wait_for_js(page, f"document.querySelector({row!r})?.dataset.active === 'true'")
    login = httpx.post(
        f"{server.base_url}/api/v1/auth/login", json={"username": "leaver", "password": PASSWORD}, timeout=30
    )
    assert login.status_code == 200
