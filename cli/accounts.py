"""`aqpl users ...` account commands: list, deactivate, reactivate, set-role, reset-password.

The operator at the command line changes accounts as an admin would (`backend.users.accounts`, actor
None), with the same rules: tokens end with a deactivation, leases return to the pool, and no change
may leave the platform without an active admin. Each command is one transaction.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlalchemy.orm import Session

T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@contextmanager
def _session() -> Iterator[Session]:
    """One unit of work on the configured database; a domain error is the command's error (exit 2)."""
    from backend.db import create_db_engine, make_session_factory, unit_of_work
    from backend.errors import DomainError
    from backend.settings import get_settings

    engine = create_db_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    except DomainError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()


def _change(username: str, change: Callable[[Session, int], T]) -> T:
    """`change(session, user id)` for the user named `username`, committed."""
    from backend.users.service import get_user_by_name

    with _session() as session:
        user = get_user_by_name(session, username)
        if user is None:
            _fail(f"no user {username!r} (see `aqpl users list`)")
        return change(session, user.id)


def users_list() -> None:
    """List the accounts: id, username, role, and whether they may sign in."""
    from sqlalchemy import select

    from backend.models import User

    with _session() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            state = "active" if user.is_active else "deactivated"
            typer.echo(f"{user.id:>6}  {user.username:<24} {user.role.value:<10} {state}")


def users_deactivate(username: str) -> None:
    """Deactivate a user: their tokens and sessions stop at once, their leases return to the pool."""
    from backend.users.accounts import change_account

    user = _change(username, lambda session, user_id: change_account(session, None, user_id, is_active=False))
    typer.echo(f"deactivated {user.role.value} {user.username!r}")


def users_reactivate(username: str) -> None:
    """Let a deactivated user sign in again (their old tokens stay revoked)."""
    from backend.users.accounts import change_account

    user = _change(username, lambda session, user_id: change_account(session, None, user_id, is_active=True))
    typer.echo(f"reactivated {user.role.value} {user.username!r}")


def users_set_role(
    username: str, role: Annotated[str, typer.Argument(help="admin, lead or annotator.")]
) -> None:
    """Change a user's role; they are signed out of their browser sessions."""
    from backend.models import Role
    from backend.users.accounts import change_account

    if role not in Role.__members__:
        _fail(f"unknown role {role!r}: choose admin, lead or annotator")
    user = _change(username, lambda session, user_id: change_account(session, None, user_id, role=Role(role)))
    typer.echo(f"{user.username!r} is now {user.role.value}")


def users_reset_password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Set a new password for a user (from a prompt or stdin); they are signed out of their sessions."""
    from backend.users.accounts import reset_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    user = _change(username, lambda session, user_id: reset_password(session, None, user_id, password))
    typer.echo(f"password of {user.username!r} reset")


def register(users_app: typer.Typer) -> None:
    """Add these commands to `aqpl users`."""
    users_app.command("list")(users_list)
    users_app.command("deactivate")(users_deactivate)
    users_app.command("reactivate")(users_reactivate)
    users_app.command("set-role")(users_set_role)
    users_app.command("reset-password")(users_reset_password)
