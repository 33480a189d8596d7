"""Page routes: server-rendered shells; the pages' scripts read and change state through the JSON API.

Pages find the user from the session cookie through their dependencies (`PageLead`, `PageAnnotator`:
backend/ui/viewer.py), which send anyone signed out to /login and anyone else home. State changes
made by a page go through /api/v1 with the X-CSRF-Token header (or, for the sign-in and sign-out
forms, a hidden csrf_token field: the session's token, or the sign-in form's signed one; see
backend/auth/csrf.py).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

import aqpl
import frontend
from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES
from aqpl.ladder import LADDER_MAX_INDEX
from backend.auth import service as auth_service
from backend.auth.csrf import CSRF_COOKIE, cookie_name, login_csrf_token_valid, new_login_csrf_token
from backend.auth.endpoints import clear_session_cookies, set_session_cookies
from backend.auth.hash_gate import LoginBusy
from backend.auth.ratelimit import LoginThrottled, login_guard, retry_later_headers
from backend.auth.scopes import ALL_SCOPES
from backend.deps import SessionDep, SettingsDep
from backend.errors import DomainError, Unauthorized
from backend.models import Role
from backend.projects.config import field_defaults
from backend.settings import Settings
from backend.ui import panels
from backend.ui.viewer import (
    FragmentLead,
    PageAnnotator,
    PageLead,
    PageViewer,
    Viewer,
    csrf_matches,
    home_of,
    login_csrf_cookie,
    login_csrf_matches,
    page_csrf_token,
    safe_next,
)
from backend.webhooks import events as webhook_events

FRONTEND_DIR = Path(frontend.__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=FRONTEND_DIR / "templates")
TEMPLATES.env.globals["version"] = aqpl.__version__
TEMPLATES.env.globals["ladder_max_index"] = LADDER_MAX_INDEX

# Pages run only our own files: no inline script, nothing from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


class StaticAssets(StaticFiles):
    """The pages' CSS and modules: revalidated on every load (ETag), so an upgrade is never half-cached."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> StaticAssets:
    return StaticAssets(directory=FRONTEND_DIR / "static")


def _render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "csrf_token": page_csrf_token(request),
            "path": request.url.path,
            "api_docs": request.app.state.settings.api_docs_enabled,
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


# ------------------------------------------------------------------ sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, viewer: PageViewer, next: str | None = None) -> Response:
    if viewer is not None:
        return RedirectResponse(safe_next(next) or viewer.home, status_code=status.HTTP_303_SEE_OTHER)
    return _login_form(request, next_path=safe_next(next))


def _login_form(
    request: Request,
    *,
    next_path: str | None,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    # A signed token in the form and a cookie (backend/auth/csrf.py): a cross-site page cannot sign
    # someone in as itself. Kept while valid, so two open sign-in tabs both work.
    settings: Settings = request.app.state.settings
    token = login_csrf_cookie(request)
    if not login_csrf_token_valid(settings, token):
        token = new_login_csrf_token(settings)
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {
            "viewer": None,
            "csrf_token": token,
            "next_path": next_path or "",
            "error": error,
            "username": username,
            "path": "/login",
        },
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    if token != login_csrf_cookie(request):
        response.set_cookie(
            cookie_name(settings, CSRF_COOKIE),
            token,
            httponly=False,
            samesite="strict",
            secure=settings.environment == "production",
            path="/",
        )
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    next_path = safe_next(next)
    if not login_csrf_matches(request, csrf_token):
        return _login_form(
            request,
            next_path=next_path,
            username=username,
            error="The sign-in form had expired; please sign in again.",
            status_code=status.HTTP_403_FORBIDDEN,
        )
    if not username or not password:
        return _login_form(
            request,
            next_path=next_path,
            username=username,
            error="Enter your username and password.",
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    address = request.client.host if request.client else "unknown"
    try:
        user = auth_service.authenticate(
            session, username, password, address, guard=login_guard(request.app.state)
        )
    except DomainError as error:
        message = "Wrong username or password." if isinstance(error, Unauthorized) else error.message
        refused = _login_form(
            request, next_path=next_path, username=username, error=message, status_code=error.status_code
        )
        if isinstance(error, LoginThrottled | LoginBusy):
            refused.headers.update(retry_later_headers(error))
        return refused
    token = auth_service.create_login_token(session, user)
    response = RedirectResponse(next_path or home_of(user), status_code=status.HTTP_303_SEE_OTHER)
    set_session_cookies(response, settings, token)
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    viewer: PageViewer,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    if viewer is None:
        clear_session_cookies(response, settings)
        return response
    if not csrf_matches(request, csrf_token):
        return RedirectResponse(viewer.home, status_code=status.HTTP_303_SEE_OTHER)
    if viewer.token.name == auth_service.LOGIN_TOKEN_NAME:
        auth_service.revoke_token(session, viewer.user, viewer.token.id)
    clear_session_cookies(response, settings)
    return response


# ------------------------------------------------------------------ annotators


@router.get("/annotate", response_class=HTMLResponse)
def annotate_page(request: Request, viewer: PageAnnotator) -> Response:
    return _render(request, "annotate.html", viewer, nav="annotate")


# ------------------------------------------------------------------ leads


@router.get("/", response_class=HTMLResponse)
def dashboard_page(request: Request, viewer: PageLead) -> Response:
    return _render(request, "dashboard.html", viewer, nav="projects")


@router.get("/projects/new", response_class=HTMLResponse)
def new_project_page(request: Request, viewer: PageLead, settings: SettingsDep) -> Response:
    return _render(
        request,
        "project_new.html",
        viewer,
        nav="projects",
        import_root=str(settings.import_root),
        corruption_names=CORRUPTION_NAMES,
        severities=CORRUPTION_SEVERITIES,
        max_upload_mib=settings.max_upload_bytes // (1024 * 1024),
        defaults=field_defaults(),  # the form starts at the settings' own defaults
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: int, viewer: PageLead, session: SessionDep) -> Response:
    try:
        project = panels.managed_project(session, viewer.user, project_id)
    except DomainError as error:
        return _render(
            request,
            "error.html",
            viewer,
            nav="projects",
            message=error.message,
            status_code=error.status_code,
        )
    return _render(
        request, "project.html", viewer, nav="projects", project=project, webhook_events=webhook_events.EVENTS
    )


@router.get("/projects/{project_id}/panels", response_class=HTMLResponse)
def project_panels(request: Request, project_id: int, viewer: FragmentLead, session: SessionDep) -> Response:
    """HTML fragment of the project page: rounds table and charts, re-fetched when the project moves on."""
    try:
        view = panels.project_panels(session, viewer.user, project_id)
    except DomainError as error:
        return HTMLResponse(
            f"<p class='notice error'>{escape(error.message)}</p>", status_code=error.status_code
        )
    response = TEMPLATES.TemplateResponse(request, "_project_panels.html", {"view": view})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/annotators", response_class=HTMLResponse)
def annotators_page(request: Request, viewer: PageLead) -> Response:
    roles = [Role.annotator.value] + ([Role.lead.value, Role.admin.value] if viewer.is_admin else [])
    return _render(request, "annotators.html", viewer, nav="annotators", roles=roles)


@router.get("/checkpoints", response_class=HTMLResponse)
def checkpoints_page(request: Request, viewer: PageLead) -> Response:
    return _render(request, "checkpoints.html", viewer, nav="checkpoints")


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, viewer: PageLead) -> Response:
    scopes = [scope for scope in ALL_SCOPES if scope in viewer.scopes]
    return _render(request, "tokens.html", viewer, nav="tokens", scopes=scopes)
