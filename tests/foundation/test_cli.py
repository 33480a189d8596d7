from pathlib import Path

from sqlalchemy import select

from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Role, User
from backend.security import verify_password
from tests.support import aqpl_env, run_aqpl


def test_db_upgrade_then_users_create_from_stdin(tmp_path: Path) -> None:
    env = aqpl_env(tmp_path)
    upgraded = run_aqpl(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    created = run_aqpl(
        ["users", "create", "ada", "--role", "lead", "--password-stdin"],
        env,
        input_text="correct horse battery\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created lead 'ada'" in created.stdout

    engine = create_db_engine(f"sqlite:///{tmp_path / 'aqpl.sqlite3'}")
    with unit_of_work(make_session_factory(engine)) as session:
        user = session.scalars(select(User).where(User.username == "ada")).one()
        assert user.role is Role.lead
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, "correct horse battery")
    engine.dispose()

    again = run_aqpl(
        ["users", "create", "ada", "--role", "lead", "--password-stdin"],
        env,
        input_text="correct horse battery\n",
    )
    assert again.returncode == 2
    assert "user 'ada' already exists" in again.stderr


def test_users_create_refuses_unknown_role_and_short_password(tmp_path: Path) -> None:
    env = aqpl_env(tmp_path)
    run_aqpl(["db", "upgrade"], env)
    bad_role = run_aqpl(
        ["users", "create", "bob", "--role", "king", "--password-stdin"], env, input_text="x" * 12
    )
    assert bad_role.returncode == 2 and "unknown role 'king'" in bad_role.stderr
    short = run_aqpl(["users", "create", "bob", "--password-stdin"], env, input_text="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_demo_seeds_logins_once_and_prints_them(tmp_path: Path) -> None:
    env = aqpl_env(tmp_path)
    run_aqpl(["db", "upgrade"], env)
    first = run_aqpl(["demo"], env)
    assert first.returncode == 0, first.stderr
    second = run_aqpl(["demo"], env)
    assert first.stdout == second.stdout
    line = next(line for line in first.stdout.splitlines() if " admin " in f" {line} ")
    password = line.split("password: ")[1].strip()

    engine = create_db_engine(f"sqlite:///{tmp_path / 'aqpl.sqlite3'}")
    with unit_of_work(make_session_factory(engine)) as session:
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        assert admin.role is Role.admin
        assert verify_password(admin.password_hash, password)
        assert len(session.scalars(select(User)).all()) == 3
    engine.dispose()


def test_simulate_is_a_command_of_aqpl(tmp_path: Path) -> None:
    result = run_aqpl(["simulate", "--dataset", "nosuchformat:x"], aqpl_env(tmp_path))
    assert result.returncode == 2
    assert "nosuchformat" in result.stderr
