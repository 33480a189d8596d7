"""CSRF tokens made with the secret key, and the names of the browser's cookies.

Signed in: a session's token is HMAC-SHA256(AQPL_SECRET_KEY, its session token), recomputed from the
session cookie on every cookie-authenticated write. A cookie that another site or a sibling
subdomain planted (`aqpl_csrf=x` and a field `x`) proves nothing; the aqpl_csrf cookie only carries
the token to the page scripts, which echo it as X-CSRF-Token.

Signed out (the sign-in form): a random nonce signed with the secret key and a time stamp, both in a
cookie and in the form's hidden field; the two must be equal and the signature valid and fresh.

In production the cookies are named `__Host-...`: browsers take such a cookie only when it is set by
this origin over HTTPS with Path=/ and no Domain, so no other subdomain or plain-HTTP page can plant
one. All comparisons run in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import Request

from backend.settings import Settings

SESSION_COOKIE = "aqpl_session"
CSRF_COOKIE = "aqpl_csrf"
HOST_PREFIX = "__Host-"
# A sign-in form older than this is refused ("the sign-in form had expired") and shown afresh.
LOGIN_FORM_LIFETIME = timedelta(hours=12)

_SESSION_PURPOSE = b"aqpl csrf token of session\x00"
_LOGIN_SALT = "aqpl csrf token of the sign-in form"


def _same(expected: str, submitted: str) -> bool:
    """Constant-time equality; bytes, since compare_digest refuses non-ASCII text (a field may hold any)."""
    return hmac.compare_digest(expected.encode(), submitted.encode())


def cookie_name(settings: Settings, name: str) -> str:
    """`name`, with the `__Host-` prefix in production."""
    return HOST_PREFIX + name if settings.environment == "production" else name


def read_cookie(request: Request, name: str) -> str:
    """The value of the cookie `name` (under its production name in production); "" if absent."""
    return request.cookies.get(cookie_name(request.app.state.settings, name), "")


def _key(settings: Settings) -> bytes:
    return settings.secret_key.get_secret_value().encode()


def session_csrf_token(settings: Settings, session_token: str) -> str:
    """The CSRF token of a signed-in session: only the server, with the secret key, can make it."""
    digest = hmac.new(_key(settings), _SESSION_PURPOSE + session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def session_csrf_valid(settings: Settings, session_token: str, submitted: str | None) -> bool:
    if not session_token or not submitted:
        return False
    return _same(session_csrf_token(settings, session_token), submitted)


def _login_signer(settings: Settings) -> TimestampSigner:
    return TimestampSigner(_key(settings), salt=_LOGIN_SALT, digest_method=hashlib.sha256)


def new_login_csrf_token(settings: Settings) -> str:
    """A fresh token for a sign-in form: a random nonce, signed and time-stamped."""
    return _login_signer(settings).sign(secrets.token_urlsafe(24)).decode()


def login_csrf_token_valid(settings: Settings, token: str) -> bool:
    """Whether `token` is one this server signed for a sign-in form, and not too old."""
    if not token:
        return False
    try:
        _login_signer(settings).unsign(token, max_age=int(LOGIN_FORM_LIFETIME.total_seconds()))
    except BadSignature:  # SignatureExpired is one
        return False
    return True


def login_csrf_valid(settings: Settings, cookie: str, submitted: str) -> bool:
    """The sign-in form's check: the field equals the cookie, and the server signed it."""
    if not cookie or not submitted or not _same(cookie, submitted):
        return False
    return login_csrf_token_valid(settings, cookie)
