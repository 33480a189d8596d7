"""/api/docs (issue 13, item 7): swagger-ui from the installed package under the pages' CSP, no CDN;
off in production unless AQPL_API_DOCS turns it on. In a browser: tests/e2e/test_api_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.factories import running_api
from tests.conftest import DatabaseFactory


def test_the_docs_page_loads_nothing_from_another_origin(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    with running_api(database_factory.create("sqlite"), tmp_path) as api:
        page = api.client.get("/api/docs")
        assert page.status_code == 200
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert references and all(ref.startswith("/") and not ref.startswith("//") for ref in references)
        assert "cdn" not in page.text.lower() and "http" not in page.text.lower()
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script"
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        for reference in references:
            asset = api.client.get(reference)
            assert asset.status_code == 200, reference
            assert asset.headers["x-content-type-options"] == "nosniff"
        bundle = api.client.get("/api/docs/assets/swagger-ui-bundle.js")
        assert "javascript" in bundle.headers["content-type"] and "SwaggerUIBundle" in bundle.text
        assert api.client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(("setting", "served"), [({}, False), ({"api_docs": True}, True)])
def test_the_docs_are_off_in_production_unless_turned_on(
    database_factory: DatabaseFactory, tmp_path: Path, setting: dict[str, bool], served: bool
) -> None:
    with running_api(
        database_factory.create("sqlite"), tmp_path, environment="production", secret_key="s" * 40, **setting
    ) as api:
        client = TestClient(api.app, base_url="https://testserver")
        assert (client.get("/api/docs").status_code == 200) is served
        assert (client.get("/api/docs/assets/swagger-ui.css").status_code == 200) is served
        assert client.get("/openapi.json").status_code == 200  # API clients still read it
