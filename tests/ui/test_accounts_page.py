"""The annotators page: admins get the account controls (and their script), leads do not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.models import Role
from tests.api.factories import Api, make_user, running_api
from tests.conftest import DatabaseFactory
from tests.ui.test_pages import sign_in


@pytest.fixture
def api(database_factory: DatabaseFactory, tmp_path: Path) -> Iterator[Api]:
    with running_api(database_factory.create("sqlite"), tmp_path) as running:
        yield running


def test_admins_get_the_account_controls_and_leads_do_not(api: Api) -> None:
    with api.seed() as session:
        admin, lead = make_user(session, Role.admin).username, make_user(session, Role.lead).username
    sign_in(api.client, admin)
    page = api.client.get("/annotators").text
    assert 'id="accounts-table"' in page and 'id="password-form"' in page
    assert re.search(r'<script type="module" src="/static/js/accounts\.js\?v=[^"]+"></script>', page)
    assert api.client.get("/static/js/accounts.js").status_code == 200

    api.client.cookies.clear()
    sign_in(api.client, lead)
    page = api.client.get("/annotators").text
    assert 'id="user-form"' in page  # leads still create annotators here
    assert "accounts-table" not in page and "accounts.js" not in page
