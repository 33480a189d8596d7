"""`aqpl users list|deactivate|reactivate|set-role|reset-password`, run as real subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from backend.auth.service import create_login_token, resolve_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Role, User
from backend.security import verify_password
from tests.support import aqpl_env, run_aqpl

PASSWORD = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A migrated SQLite database with the admin `root` and the annotator `ann`."""
    env = aqpl_env(tmp_path)
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    for name, role in (("root", "admin"), ("ann", "annotator")):
        created = run_aqpl(
            ["users", "create", name, "--role", role, "--password-stdin"], env, input_text=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
    return env


def user(tmp_path: Path, username: str) -> User:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'aqpl.sqlite3'}")
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return session.scalars(select(User).where(User.username == username)).one()
    finally:
        engine.dispose()


def login_token(tmp_path: Path, username: str) -> str:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'aqpl.sqlite3'}")
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return create_login_token(
                session, session.scalars(select(User).where(User.username == username)).one()
            )
    finally:
        engine.dispose()


def token_works(tmp_path: Path, token: str) -> bool:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'aqpl.sqlite3'}")
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return resolve_token(session, token) is not None
    finally:
        engine.dispose()


def test_deactivate_ends_the_sessions_and_reactivate_lets_them_back_in(
    tmp_path: Path, env: dict[str, str]
) -> None:
    token = login_token(tmp_path, "ann")
    assert token_works(tmp_path, token)
    result = run_aqpl(["users", "deactivate", "ann"], env)
    assert result.returncode == 0, result.stderr
    assert "deactivated annotator 'ann'" in result.stdout
    assert not user(tmp_path, "ann").is_active
    assert not token_works(tmp_path, token)
    listed = run_aqpl(["users", "list"], env)
    assert listed.returncode == 0
    assert any("ann" in line and "deactivated" in line for line in listed.stdout.splitlines())

    result = run_aqpl(["users", "reactivate", "ann"], env)
    assert result.returncode == 0, result.stderr
    assert user(tmp_path, "ann").is_active
    assert not token_works(tmp_path, token)  # the old session stays ended


def test_set_role_changes_the_role_and_refuses_unknown_ones(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_aqpl(["users", "set-role", "ann", "lead"], env)
    assert result.returncode == 0, result.stderr
    assert "'ann' is now lead" in result.stdout
    assert user(tmp_path, "ann").role is Role.lead
    bad = run_aqpl(["users", "set-role", "ann", "king"], env)
    assert bad.returncode == 2 and "unknown role 'king'" in bad.stderr


def test_reset_password_from_stdin(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_aqpl(
        ["users", "reset-password", "ann", "--password-stdin"], env, input_text="brand new secret\n"
    )
    assert result.returncode == 0, result.stderr
    assert "brand new secret" not in result.stdout + result.stderr
    stored = user(tmp_path, "ann").password_hash
    assert verify_password(stored, "brand new secret") and not verify_password(stored, PASSWORD)
    short = run_aqpl(["users", "reset-password", "ann", "--password-stdin"], env, input_text="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_the_last_admin_stays_and_unknown_names_are_errors(tmp_path: Path, env: dict[str, str]) -> None:
    for command in (["users", "deactivate", "root"], ["users", "set-role", "root", "lead"]):
        result = run_aqpl(command, env)
        assert result.returncode == 2, result.stdout
        assert "no active admin" in result.stderr
    assert user(tmp_path, "root").role is Role.admin and user(tmp_path, "root").is_active
    missing = run_aqpl(["users", "deactivate", "nobody"], env)
    assert missing.returncode == 2 and "no user 'nobody'" in missing.stderr
