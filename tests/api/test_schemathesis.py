"""Property-based fuzzing of every operation in /openapi.json (schemathesis): no input, valid or not,
makes the API answer with a server error.

The app runs in-process (ASGI) on a migrated database seeded with one of everything (ids 1, 2, ...
exist, so generated ids reach past 404s), authenticated as an admin API token with every scope.
Each operation gets a bounded number of examples, half valid by the schema and half not, so the
run stays within a couple of minutes per database.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans

from backend.app import create_app
from backend.auth.scopes import ALL_SCOPES
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import ApiToken, Checkpoint, Role, Split
from backend.security import new_token, token_digest
from backend.settings import Settings
from backend.storage import checkpoint_path, relative_to_storage
from tests.api.factories import make_annotating_round, make_examples, make_user, write_project_images
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.slow

# Examples per operation and generation mode: 32 operations x 2 modes x 10 = 640 requests.
EXAMPLES_PER_MODE = 10
# Far above the ids the seed makes, so that DELETE /tokens/{id} with a generated id never revokes it.
ADMIN_TOKEN_ID = 900_001


def seed(database_url: str, app_settings: Settings) -> str:
    """One of everything; returns the admin's bearer token."""
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            admin = make_user(session, Role.admin)
            lead = make_user(session, Role.lead)
            make_user(session, Role.annotator)
            project, _round, _queries = make_annotating_round(session, lead, queries=3)
            make_examples(session, project, 2, split=Split.test)
            write_project_images(app_settings, project)
            weights = b"not really weights"
            path = checkpoint_path(app_settings, project.id, 0)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(weights)
            session.add(
                Checkpoint(
                    project_id=project.id,
                    round_id=None,
                    round_number=0,
                    file=relative_to_storage(app_settings, path),
                    sha256=hashlib.sha256(weights).hexdigest(),
                    size_bytes=len(weights),
                    meta={"architecture": "small_cnn"},
                    metrics={"clean": 0.5},
                )
            )
            plain = new_token()
            session.add(
                ApiToken(
                    id=ADMIN_TOKEN_ID,
                    user_id=admin.id,
                    name="schemathesis",
                    token_hash=token_digest(plain),
                    scopes=list(ALL_SCOPES),
                    created_at=datetime.now(UTC),
                )
            )
    finally:
        engine.dispose()
    return plain


def fuzz(
    operation: schemathesis.APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    headers: dict[str, str],
    failures: list[str],
    statuses: Counter[int],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,  # no .hypothesis folder in the repository
        phases=(Phase.explicit, Phase.generate),  # no shrinking: the report shows the failing request
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as error:
            failures.append(f"{case.operation.label} [{mode.value}]: {case.as_curl_command()}\n{error}")

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing to make invalid (no parameters, no body)


@pytest.fixture
def asgi_lifespans() -> Iterator[None]:
    yield
    shutdown_lifespans()  # the ASGI transport keeps each app's lifespan (and engine) open until told


@pytest.mark.usefixtures("asgi_lifespans")
def test_no_operation_answers_with_a_server_error(
    database_factory: DatabaseFactory, database_kind: str, tmp_path: Path
) -> None:
    database_url = database_factory.create(database_kind)
    app_settings = Settings(data_dir=tmp_path / "data", database_url=database_url, max_upload_bytes=1 << 20)
    token = seed(database_url, app_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings))
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema itself is valid
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, failures, statuses)
    assert operations >= 25  # the whole API was fuzzed, not an empty schema
    assert failures == [], "\n\n".join(failures)
    # The token worked: most answers are past authentication, and some requests succeed.
    assert statuses[401] < sum(statuses.values()) / 10, statuses
    assert sum(count for status, count in statuses.items() if status < 300) > 20, statuses
