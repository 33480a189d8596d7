"""Timestamps are stored as UTC on SQLite as on PostgreSQL.

The review found that on SQLite an `expires_at` given with `+14:00` was stored as its wall time, as
if it were UTC: the token lived 14 hours too long. Every test runs on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from backend.auth.service import create_api_token, resolve_caller, resolve_token
from backend.models import ApiToken, Role
from backend.security import new_token, token_digest
from tests.api.factories import Api, make_user, running_api
from tests.conftest import DatabaseFactory

KIRITIMATI = timezone(timedelta(hours=14))  # UTC+14, the farthest ahead of UTC


@pytest.fixture
def api(database_factory: DatabaseFactory, database_kind: str, tmp_path: Path) -> Iterator[Api]:
    with running_api(database_factory.create(database_kind), tmp_path) as api:
        yield api


def test_an_offset_given_to_the_api_comes_back_as_the_same_instant_in_utc(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    headers = api.headers_for(lead)
    body = {"name": "ci", "scopes": ["checkpoints:read"], "expires_at": "2030-01-01T12:00:00+14:00"}
    created = api.client.post("/api/v1/tokens", headers=headers, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["expires_at"] == "2029-12-31T22:00:00Z"
    listed = api.client.get("/api/v1/tokens", headers=headers).json()
    assert [token["expires_at"] for token in listed] == ["2029-12-31T22:00:00Z"]
    assert listed[0]["created_at"].endswith("Z")


def test_the_column_stores_utc_and_reads_back_aware_utc(db_session: Session, database_kind: str) -> None:
    lead = make_user(db_session, Role.lead)
    token, _plain = create_api_token(
        db_session, lead, "ci", ["checkpoints:read"], datetime(2030, 1, 1, 12, tzinfo=KIRITIMATI)
    )
    db_session.expire_all()
    stored = db_session.get(ApiToken, token.id)
    assert stored is not None and stored.expires_at is not None
    assert stored.expires_at == datetime(2029, 12, 31, 22, tzinfo=UTC)
    assert stored.expires_at.utcoffset() == timedelta(0)
    assert stored.created_at.utcoffset() == timedelta(0)
    raw = db_session.execute(
        text("SELECT expires_at FROM api_tokens WHERE id = :id"), {"id": token.id}
    ).scalar()
    if database_kind == "sqlite":
        assert str(raw).startswith("2029-12-31 22:00:00")  # the UTC wall time, not +14:00's
    else:
        assert raw == datetime(2029, 12, 31, 22, tzinfo=UTC)


def test_a_token_that_expired_an_hour_ago_is_refused_whatever_its_offset(db_session: Session) -> None:
    lead = make_user(db_session, Role.lead)
    plain = new_token()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(KIRITIMATI)
    db_session.add(
        ApiToken(
            user_id=lead.id,
            name="expired",
            token_hash=token_digest(plain),
            scopes=["checkpoints:read"],
            expires_at=an_hour_ago,
        )
    )
    db_session.flush()
    db_session.expire_all()
    assert resolve_token(db_session, plain) is None
    assert resolve_caller(db_session, plain) is None


def test_a_naive_timestamp_is_refused(db_session: Session) -> None:
    lead = make_user(db_session, Role.lead)
    db_session.add(
        ApiToken(
            user_id=lead.id,
            name="naive",
            token_hash=token_digest(new_token()),
            scopes=["checkpoints:read"],
            expires_at=datetime(2030, 1, 1, 12),  # the point of the test
        )
    )
    with pytest.raises(StatementError, match="needs a time zone"):
        db_session.flush()
