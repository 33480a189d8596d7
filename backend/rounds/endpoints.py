from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from backend.deps import Lead, SessionDep
from backend.rounds import repository, service
from backend.rounds.schemas import QueryRead, RoundRead

router = APIRouter(prefix="/rounds", tags=["rounds"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
RoundId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/{round_id}")
def get_round(round_id: RoundId, user: Lead, session: SessionDep) -> RoundRead:
    """A round's state, progress (examples scored, training steps), counts and agreement."""
    round_, _ = service.get_managed_round(session, user, round_id)
    return repository.round_read(session, round_)


@router.get("/{round_id}/queries")
def list_queries(round_id: RoundId, user: Lead, session: SessionDep) -> list[QueryRead]:
    """The round's queries with every answer, the consensus σ and its dispersion."""
    round_, _ = service.get_managed_round(session, user, round_id)
    return repository.query_reads(session, round_.id)


@router.post("/{round_id}/close")
def close_round(round_id: RoundId, user: Lead, session: SessionDep) -> RoundRead:
    """Stop annotation: the worker aggregates the answers, retrains and publishes a checkpoint."""
    round_, _ = service.get_managed_round(session, user, round_id)
    return repository.round_read(session, service.close_round(session, round_, closed_by=user))


@router.post("/{round_id}/retry")
def retry_round(round_id: RoundId, user: Lead, session: SessionDep) -> RoundRead:
    """Resume a failed round at the step that failed."""
    round_, _ = service.get_managed_round(session, user, round_id)
    return repository.round_read(session, service.retry_round(session, round_))
