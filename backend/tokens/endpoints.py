from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from backend.auth import service
from backend.auth.service import as_utc
from backend.deps import Lead, SessionDep
from backend.models import ApiToken
from backend.tokens.schemas import TokenCreate, TokenCreated, TokenRead

router = APIRouter(prefix="/tokens", tags=["tokens"])

TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def token_read(token: ApiToken) -> TokenRead:
    return TokenRead(
        id=token.id,
        name=token.name,
        scopes=list(token.scopes),
        created_at=as_utc(token.created_at),
        expires_at=as_utc(token.expires_at) if token.expires_at else None,
        last_used_at=as_utc(token.last_used_at) if token.last_used_at else None,
        revoked_at=as_utc(token.revoked_at) if token.revoked_at else None,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenCreate, request: Request, response: Response, user: Lead, session: SessionDep
) -> TokenCreated:
    """Create an API token with some of your scopes; its value is in this response only."""
    response.headers["Cache-Control"] = "no-store"  # the token's value: no cache may keep it
    token, plain = service.create_api_token(
        session, user, body.name, body.scopes, body.expires_at, within_scopes=request.state.scopes
    )
    return TokenCreated(**token_read(token).model_dump(), token=plain)


@router.get("")
def list_tokens(user: Lead, session: SessionDep) -> list[TokenRead]:
    """Your API tokens (values are never shown again)."""
    return [token_read(token) for token in service.list_api_tokens(session, user)]


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: TokenId, user: Lead, session: SessionDep) -> Response:
    """Revoke a token: requests that present it get 401 from now on."""
    service.revoke_token(session, user, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
