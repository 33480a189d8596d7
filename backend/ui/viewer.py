"""Who is looking at a page: the session cookie resolved to a user and the scopes of their role;
and the pages' dependency aliases (`PageLead`, `PageAnnotator`, ...), as backend/deps.py's for the API.

A page dependency that refuses raises `PageRefused` with the answer to send instead: signed out, a
redirect to sign in that comes back (`?next=`); signed in without the scope, a redirect to the
viewer's own home page. Fragments that page scripts fetch answer a bare 401 instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from backend.auth.csrf import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    login_csrf_valid,
    read_cookie,
    session_csrf_token,
    session_csrf_valid,
)
from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE, effective_scopes
from backend.auth.service import resolve_token
from backend.deps import ScopeCheck, SessionDep
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


def current_viewer(request: Request, session: SessionDep) -> Viewer | None:
    """The signed-in user of the session cookie, or None (absent, expired, revoked, inactive)."""
    plain = read_cookie(request, SESSION_COOKIE)
    if not plain:
        return None
    resolved = resolve_token(session, plain)
    if resolved is None:
        return None
    user, token = resolved
    return Viewer(user=user, token=token, scopes=effective_scopes(user.role, token.scopes))


def page_csrf_token(request: Request) -> str:
    """The CSRF token of the signed-in session for the page's forms ("" when signed out)."""
    plain = read_cookie(request, SESSION_COOKIE)
    return session_csrf_token(request.app.state.settings, plain) if plain else ""


def csrf_matches(request: Request, submitted: str) -> bool:
    """A signed-in page form's check: the field must be the session's token (backend/auth/csrf.py)."""
    return session_csrf_valid(request.app.state.settings, read_cookie(request, SESSION_COOKIE), submitted)


def login_csrf_cookie(request: Request) -> str:
    """The sign-in form's token as its cookie holds it ("" if none)."""
    return read_cookie(request, CSRF_COOKIE)


def login_csrf_matches(request: Request, submitted: str) -> bool:
    """The sign-in form's check: its field equals its cookie, and this server signed the token."""
    return login_csrf_valid(request.app.state.settings, login_csrf_cookie(request), submitted)


def safe_next(raw: str | None) -> str | None:
    """A local path to go back to after signing in; anything that could leave the site is dropped."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return None
    return raw


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


# ------------------------------------------------------------------ dependencies of the page routes


class PageRefused(Exception):
    """Raised by a page dependency: `response` is the answer instead of the page."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def install_page_refusals(app: FastAPI) -> None:
    @app.exception_handler(PageRefused)
    async def _page_refused(_request: Request, exc: PageRefused) -> Response:
        return exc.response


# Whoever is signed in, if anyone: for the pages everyone may open (sign-in, sign-out).
PageViewer = Annotated[Viewer | None, Depends(current_viewer)]


class PageScopeRequirement(ScopeCheck):
    """Dependency of a page: the viewer, if their role allows `scope`; else a 303 to sign in (and come
    back here) or, when signed in, to their own home page."""

    async def __call__(self, request: Request, viewer: PageViewer) -> Viewer:  # async: no thread hop
        if viewer is None:
            raise PageRefused(RedirectResponse(login_url(request), status_code=status.HTTP_303_SEE_OTHER))
        if self.scope not in viewer.scopes:
            raise PageRefused(RedirectResponse(viewer.home, status_code=status.HTTP_303_SEE_OTHER))
        return viewer


class FragmentScopeRequirement(ScopeCheck):
    """Dependency of an HTML fragment that a page's script fetches: the viewer with `scope`, else an
    empty 401 (a redirect would put the sign-in page where the fragment goes; the script says it failed)."""

    async def __call__(self, viewer: PageViewer) -> Viewer:  # async: no thread hop
        if viewer is None or self.scope not in viewer.scopes:
            raise PageRefused(HTMLResponse("", status_code=status.HTTP_401_UNAUTHORIZED))
        return viewer


PageLead = Annotated[Viewer, Depends(PageScopeRequirement(MANAGE))]
PageAnnotator = Annotated[Viewer, Depends(PageScopeRequirement(ANNOTATE))]
FragmentLead = Annotated[Viewer, Depends(FragmentScopeRequirement(MANAGE))]
