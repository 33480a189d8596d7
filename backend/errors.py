"""Domain errors: raised by services, mapped once to an HTTP status with a message a person can act on."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect

from backend.admission import BUSY_MESSAGE

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """Base of every expected failure; `status_code` is what the API answers."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Where a problem is in the request, as pydantic says it: ("body", "dataset", "path").
Loc = tuple[str | int, ...]


class InvalidInput(DomainError):
    """The request is understood but wrong; `loc` names the one field it is about, when it is."""

    status_code = 422

    def __init__(self, message: str, *, loc: Loc | None = None) -> None:
        super().__init__(message)
        self.loc = loc


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class TooManyRequests(DomainError):
    status_code = 429


class PayloadTooLarge(DomainError):
    status_code = 413


class ClientGone(Exception):
    """The client closed its connection before its answer was ready: the work stops, nothing commits."""


# nginx's "client closed request": only logs and metrics see it, the client is gone.
CLIENT_CLOSED_REQUEST = 499


def _json_safe(value: Any) -> Any:
    """Validation errors echo the bad input; NaN and infinity have no JSON form, so they become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler fails (500) on a body like {"seconds": 1e999}: it cannot encode inf.
        # Every 422 carries `errors`: each problem's place in the request (`loc`) and its message.
        problems = exc.errors()
        errors = [{"loc": list(item["loc"]), "msg": item["msg"]} for item in problems]
        return JSONResponse(
            {"detail": _json_safe(jsonable_encoder(problems)), "errors": errors}, status_code=422
        )

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        body: dict[str, Any] = {"detail": exc.message}
        if isinstance(exc, InvalidInput):
            body["errors"] = [{"loc": list(exc.loc), "msg": exc.message}] if exc.loc else []
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)  # gone while its body was being read
    async def _client_gone(_request: Request, _exc: Exception) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, _exc: OperationalError) -> JSONResponse:
        # No driver message: it can carry host names and credentials.
        return JSONResponse(
            {"detail": "The database is unreachable right now; try again in a moment."}, status_code=503
        )

    @app.exception_handler(PoolTimeout)
    async def _database_busy(request: Request, _exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy for the pool's timeout: overloaded, not broken.
        return JSONResponse(
            {"detail": BUSY_MESSAGE},
            status_code=503,
            headers={"Retry-After": str(request.app.state.settings.retry_after_seconds)},
        )

    @app.exception_handler(DataError)
    @app.exception_handler(UnicodeEncodeError)
    async def _unstorable_value(_request: Request, _exc: Exception) -> JSONResponse:
        # Input that passed validation but that the database refuses: a NUL character (PostgreSQL),
        # an unpaired surrogate (no UTF-8 form), a number beyond the column's range.
        return JSONResponse(
            {
                "detail": "a value in the request cannot be stored: out of range, or text with NUL "
                "or unpaired surrogate characters",
                "errors": [],
            },
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the server log only: clients never see stack traces or driver messages.
        logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        # Starlette sends this from outside every middleware: the security headers go on here.
        return JSONResponse(
            {"detail": "internal error"}, status_code=500, headers={"X-Content-Type-Options": "nosniff"}
        )
