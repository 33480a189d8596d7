from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from backend.auth import service
from backend.auth.csrf import CSRF_COOKIE, SESSION_COOKIE, cookie_name, session_csrf_token
from backend.auth.ratelimit import login_guard
from backend.auth.schemas import LoginRead, LoginRequest, MeRead
from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])


def set_session_cookies(response: Response, settings: Settings, token: str) -> str:
    """The browser session: an HttpOnly token cookie and a CSRF cookie that page scripts echo back
    (`__Host-` names in production, backend/auth/csrf.py); returns the session's CSRF token."""
    secure = settings.environment == "production"
    max_age = int(service.LOGIN_TOKEN_LIFETIME.total_seconds())
    csrf_token = session_csrf_token(settings, token)
    response.set_cookie(
        cookie_name(settings, SESSION_COOKIE),
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    response.set_cookie(
        cookie_name(settings, CSRF_COOKIE),
        csrf_token,
        max_age=max_age,
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"  # it carries the tokens
    return csrf_token


def clear_session_cookies(response: Response, settings: Settings) -> None:
    secure = settings.environment == "production"  # a browser drops a __Host- cookie only so
    response.delete_cookie(cookie_name(settings, SESSION_COOKIE), path="/", secure=secure, httponly=True)
    response.delete_cookie(cookie_name(settings, CSRF_COOKIE), path="/", secure=secure, samesite="strict")


@router.post("/login")
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> LoginRead:
    """Exchange a username and password for a bearer token and the browser session cookies."""
    address = request.client.host if request.client else "unknown"
    user = service.authenticate(
        session, body.username, body.password, address, guard=login_guard(request.app.state)
    )
    token = service.create_login_token(session, user)
    csrf_token = set_session_cookies(response, settings, token)
    return LoginRead(access_token=token, role=user.role, csrf_token=csrf_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """End this browser session: its login token is revoked and the cookies cleared."""
    token = request.state.api_token
    if token.name == service.LOGIN_TOKEN_NAME:
        service.revoke_token(session, user, token.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response, settings)
    return response


@router.get("/me")
def me(request: Request, user: CurrentUser) -> MeRead:
    """Who the presented token or session belongs to, and what it may do."""
    return MeRead(id=user.id, username=user.username, role=user.role, scopes=sorted(request.state.scopes))
