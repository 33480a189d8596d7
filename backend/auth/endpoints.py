from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response, status

from backend.auth import service
from backend.auth.ratelimit import limiter_for
from backend.auth.schemas import LoginRead, LoginRequest, MeRead
from backend.deps import CSRF_COOKIE, SESSION_COOKIE, CurrentUser, SessionDep, SettingsDep
from backend.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])


def set_session_cookies(response: Response, settings: Settings, token: str, csrf_token: str) -> None:
    """The browser session: an HttpOnly token cookie and a CSRF cookie that page scripts echo back."""
    secure = settings.environment == "production"
    max_age = int(service.LOGIN_TOKEN_LIFETIME.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf_token, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/login")
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> LoginRead:
    """Exchange a username and password for a bearer token and the browser session cookies."""
    address = request.client.host if request.client else "unknown"
    user = service.authenticate(
        session, body.username, body.password, address, limiter=limiter_for(request.app.state)
    )
    token = service.create_login_token(session, user)
    csrf_token = secrets.token_urlsafe(32)
    set_session_cookies(response, settings, token, csrf_token)
    return LoginRead(access_token=token, role=user.role, csrf_token=csrf_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    """End this browser session: its login token is revoked and the cookies cleared."""
    token = request.state.api_token
    if token.name == service.LOGIN_TOKEN_NAME:
        service.revoke_token(session, user, token.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.get("/me")
def me(request: Request, user: CurrentUser) -> MeRead:
    """Who the presented token or session belongs to, and what it may do."""
    return MeRead(id=user.id, username=user.username, role=user.role, scopes=sorted(request.state.scopes))
