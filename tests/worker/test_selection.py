"""Which earlier queries keep an example out of the next round's selection, on a real database.

The worker's steps run in-process here, inside the test's transaction (rolled back after), so
the real aggregation and selection read and write the rows the factories made.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Query, QuerySide, Role, RoundState, SigmaChange, SigmaSource
from backend.rounds.repository import answered_before
from backend.rounds.service import close_round
from tests.api.factories import (
    make_examples,
    make_project,
    make_queries,
    make_round,
    make_scored_round,
    make_user,
)
from tests.api.platform_support import add_answer
from worker.jobs.rounds import aggregate
from worker.jobs.scoring import _select_and_open


def test_an_example_whose_query_got_no_answer_can_be_selected_again(session: Session) -> None:
    lead = make_user(session, Role.lead)
    people = [make_user(session, Role.annotator) for _ in range(2)]
    project = make_project(session, lead, budget=1)  # AQPL: the highest H and the lowest H
    examples = make_examples(session, project, 6)
    answered, unanswered = examples[:2], examples[2]

    first = make_round(session, project, 1)
    queries = make_queries(session, first, examples[:3])
    add_answer(session, queries[0], people[0], 20)
    add_answer(session, queries[0], people[1], 40)
    add_answer(session, queries[1], people[0], 60)
    close_round(session, first, closed_by=lead)  # the third query closes with no answer
    aggregate(first.id)
    assert first.state == RoundState.training
    assert [query.result_sigma_index for query in queries] == [30, 60, None]
    assert (unanswered.sigma_index, unanswered.sigma_source, unanswered.sigma_round) == (
        30,
        SigmaSource.initial,
        0,
    )
    assert session.scalars(select(SigmaChange).where(SigmaChange.example_id == unanswered.id)).all() == []
    first.state = RoundState.published

    # H falls with the dataset index: the answered examples rank highest, the unanswered one next.
    second = make_scored_round(session, project, 2, examples)
    assert answered_before(session, project.id, 2) == {example.id for example in answered}

    _select_and_open(session, second, project, project.config)
    assert second.state == RoundState.annotating
    chosen = session.scalars(select(Query).where(Query.round_id == second.id).order_by(Query.id)).all()
    assert {(query.example_id, query.side) for query in chosen} == {
        (unanswered.id, QuerySide.excessive),
        (examples[-1].id, QuerySide.deficient),
    }
    again = next(query for query in chosen if query.example_id == unanswered.id)
    assert again.sigma_index_before == 30
