"""Who is looking at a page: the session cookie resolved to a user and the scopes of their role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from sqlalchemy.orm import Session

from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE, effective_scopes
from backend.auth.service import resolve_token
from backend.deps import CSRF_COOKIE, SESSION_COOKIE
from backend.models import ApiToken, Role, User


@dataclass(frozen=True)
class Viewer:
    user: User
    token: ApiToken
    scopes: frozenset[str]

    @property
    def can_manage(self) -> bool:
        return MANAGE in self.scopes

    @property
    def can_annotate(self) -> bool:
        return ANNOTATE in self.scopes

    @property
    def can_read_checkpoints(self) -> bool:
        return CHECKPOINTS_READ in self.scopes

    @property
    def is_admin(self) -> bool:
        return self.user.role == Role.admin

    @property
    def home(self) -> str:
        return home_of(self.user)


def home_of(user: User) -> str:
    """Leads and admins land on the dashboard, annotators on the annotation page."""
    return "/" if user.role in (Role.admin, Role.lead) else "/annotate"


def current_viewer(request: Request, session: Session) -> Viewer | None:
    """The signed-in user of the session cookie, or None (absent, expired, revoked, inactive)."""
    plain = request.cookies.get(SESSION_COOKIE)
    if not plain:
        return None
    resolved = resolve_token(session, plain)
    if resolved is None:
        return None
    user, token = resolved
    return Viewer(user=user, token=token, scopes=effective_scopes(user.role, token.scopes))


def csrf_cookie(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE, "")


def csrf_matches(request: Request, submitted: str) -> bool:
    """Double-submit check of a page form: the hidden field must equal the aqpl_csrf cookie."""
    expected = csrf_cookie(request)
    return bool(expected) and bool(submitted) and secrets.compare_digest(expected, submitted)


def safe_next(raw: str | None) -> str | None:
    """A local path to go back to after signing in; anything that could leave the site is dropped."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return None
    return raw


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"
