"""The app under test for tests/api: `api`, one per module and database kind, or `fresh_api`, one per test.

A module changes what these build by overriding a fixture they depend on: `api_settings` (settings of
the app beyond the defaults) or `api_database` (the committed database the module's `api` runs on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.factories import Api, running_api
from tests.conftest import DatabaseFactory


@pytest.fixture(scope="module")
def api_settings() -> dict[str, Any]:
    """Settings of the app beyond the defaults (none here; a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def api_database(database_factory: DatabaseFactory, database_kind: str) -> str:
    """One migrated, committed database per module and kind."""
    return database_factory.create(database_kind)


@pytest.fixture(scope="module")
def api(
    api_database: str, api_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One committed database per module and kind (tests make their own users and projects)."""
    with running_api(api_database, tmp_path_factory.mktemp("api"), **api_settings) as api:
        yield api


@pytest.fixture
def fresh_api(
    database_factory: DatabaseFactory, database_kind: str, api_settings: dict[str, Any], tmp_path: Path
) -> Iterator[Api]:
    """A database and data dir (`tmp_path`) per test, for tests that read all rows or queued tasks."""
    with running_api(database_factory.create(database_kind), tmp_path, **api_settings) as api:
        yield api


@pytest.fixture(autouse=True)
def _no_cookies_left(request: pytest.FixtureRequest) -> None:
    """A test starts signed out: cookies a login left on a shared `api`'s client are cleared."""
    if "api" in request.fixturenames:
        request.getfixturevalue("api").client.cookies.clear()
