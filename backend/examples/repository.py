"""The one query behind every image request: the example, its project, and the caller's live lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from backend.models import Assignment, AssignmentState, Example, Project, Query
from backend.models._types import UTCDateTime

# An assignment of this caller, leased and unexpired, on a query of this example: the probe walks
# queries' example_id index and assignments' (query_id, annotator_id) unique index.
_LIVE_LEASE = exists(
    select(Assignment.id)
    .join(Query, Query.id == Assignment.query_id)
    .where(
        Query.example_id == Example.id,
        Assignment.annotator_id == bindparam("annotator_id", type_=Integer),
        and_(
            Assignment.state == AssignmentState.leased,
            Assignment.expires_at > bindparam("now", type_=UTCDateTime),
        ),
    )
)
# Built once (see backend/tasks/repository.py: building costs more than running).
_EXAMPLE_WITH_LEASE = (
    select(Example, Project, _LIVE_LEASE.label("leased"))
    .join(Project, Project.id == Example.project_id)
    .where(Example.id == bindparam("example_id", type_=Integer))
)


def example_with_lease(
    session: Session, example_id: int, annotator_id: int, now: datetime
) -> tuple[Example, Project, bool] | None:
    """The example, its project, and whether `annotator_id` holds a live lease on a query of it."""
    row = session.execute(
        _EXAMPLE_WITH_LEASE, {"example_id": example_id, "annotator_id": annotator_id, "now": now}
    ).one_or_none()
    if row is None:
        return None
    example, project, leased = row
    return example, project, bool(leased)
