"""Gold questions in a round's life, on a real database: the round opens gold queries beside its
selected ones, their answers measure people and never change σ, and `exclude_flagged` leaves a
flagged annotator's answers out of the consensus.

The worker's steps run in-process, inside the test's transaction (as in test_selection.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.gold.quality import flagged_annotators
from backend.gold.repository import add_gold_queries, gold_scores
from backend.models import (
    Example,
    GoldExample,
    GoldSource,
    Project,
    Query,
    QuerySide,
    Role,
    Round,
    RoundState,
    SigmaChange,
    User,
)
from backend.rounds.repository import answered_before, counts, required_answers
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


def make_gold(session: Session, project: Project, example: Example, sigma_index: int) -> GoldExample:
    gold = GoldExample(
        project_id=project.id, example_id=example.id, sigma_index=sigma_index, source=GoldSource.typed
    )
    session.add(gold)
    session.flush()
    return gold


def gold_queries(session: Session, round_: Round) -> list[Query]:
    statement = select(Query).where(Query.round_id == round_.id, Query.status == "gold").order_by(Query.id)
    return list(session.scalars(statement))


@pytest.mark.parametrize("gold_rate", [0.2, 0.0])
def test_a_round_opens_gold_queries_for_the_gold_examples_it_did_not_select(
    session: Session, gold_rate: float
) -> None:
    lead = make_user(session, Role.lead)
    project = make_project(session, lead, budget=1, gold_rate=gold_rate)
    examples = make_examples(session, project, 6)
    for example, known in ((examples[0], 12), (examples[3], 44), (examples[4], 70)):
        make_gold(session, project, example, known)
    round_ = make_scored_round(session, project, 1, examples)

    _select_and_open(session, round_, project, project.config)

    assert round_.state == RoundState.annotating
    assert counts(session, round_.id).queries == 2  # examples[0] (highest H) and examples[5] (lowest)
    assert required_answers(session, round_.id) == 2 * project.config.overlap
    gold = gold_queries(session, round_)
    if gold_rate == 0:  # no gold rate: no gold queries, and tasks/next spends nothing on gold
        assert gold == [] and round_.gold_rate == 0
        return
    assert round_.gold_rate == pytest.approx(0.2)
    # examples[0] was selected: it is asked as a real query this round, not as gold.
    assert [(q.example_id, q.gold_sigma_index, q.side, q.required_answers) for q in gold] == [
        (examples[3].id, 44, QuerySide.gold, 0),
        (examples[4].id, 70, QuerySide.gold, 0),
    ]
    assert all(q.sigma_index_before == 30 for q in gold)  # shown at σ_i, like any query


def annotating_round_with_gold(
    session: Session, **config: Any
) -> tuple[Project, Round, list[Example], list[Query], list[Query], list[User]]:
    """3 selected queries (overlap 2) and 2 gold examples (σ 40 and 60) with their gold queries."""
    lead = make_user(session, Role.lead)
    project = make_project(session, lead, gold_rate=0.3, **config)
    examples = make_examples(session, project, 5)
    make_gold(session, project, examples[3], 40)
    make_gold(session, project, examples[4], 60)
    round_ = make_round(session, project, 1)
    selected = make_queries(session, round_, examples[:3])
    assert add_gold_queries(session, round_.id, project.id, {q.example_id for q in selected}) == 2
    people = [make_user(session, Role.annotator) for _ in range(3)]
    return project, round_, examples, selected, gold_queries(session, round_), people


def test_gold_answers_measure_people_and_never_change_sigma(session: Session) -> None:
    project, round_, examples, selected, gold, (ann, bob, cat) = annotating_round_with_gold(session)
    add_answer(session, selected[0], ann, 20)
    add_answer(session, selected[0], bob, 40)
    add_answer(session, selected[1], ann, 50)
    # Gold answers: Ann is exact on both, Bob answers 10 too strong then 4 too weak, Cat only once.
    for query, (by_ann, by_bob) in zip(gold, ((40, 50), (60, 56)), strict=True):
        add_answer(session, query, ann, by_ann)
        add_answer(session, query, bob, by_bob)
    add_answer(session, gold[0], cat, 90)

    assert counts(session, round_.id).answers == 3  # the round's own answers only
    assert counts(session, round_.id).annotators == 2
    scores = {score.annotator_id: score for score in gold_scores(session, [project.id])}
    assert (scores[ann.id].answers, scores[ann.id].absolute_error_sum, scores[ann.id].error_sum) == (2, 0, 0)
    assert (scores[bob.id].answers, scores[bob.id].absolute_error_sum, scores[bob.id].error_sum) == (2, 14, 6)
    assert (scores[cat.id].answers, scores[cat.id].absolute_error_sum) == (1, 50)

    close_round(session, round_, closed_by=session.get(User, project.owner_id))
    aggregate(round_.id)

    assert round_.state == RoundState.training
    assert [query.result_sigma_index for query in selected] == [30, 50, None]
    assert all(query.result_sigma_index is None and query.status == "gold" for query in gold)
    # The gold examples keep their σ: no change, no history entry.
    assert [examples[3].sigma_index, examples[4].sigma_index] == [30, 30]
    changed = {change.example_id for change in session.scalars(select(SigmaChange))}
    assert changed == {examples[0].id, examples[1].id}
    # Answering a gold query does not make its example "asked before": a later round may select it.
    assert answered_before(session, project.id, 2) == {examples[0].id, examples[1].id}


@pytest.mark.parametrize("exclude_flagged", [True, False])
def test_exclude_flagged_leaves_a_flagged_annotators_answers_out_of_the_consensus(
    session: Session, exclude_flagged: bool
) -> None:
    project, round_, _examples, selected, gold, (ann, bob, cat) = annotating_round_with_gold(
        session, exclude_flagged=exclude_flagged, gold_min_answers=2, gold_max_error=10.0
    )
    add_answer(session, gold[0], cat, 80)  # error +40
    add_answer(session, gold[1], cat, 40)  # error -20: MAE 30 > 10 on 2 answers: flagged
    add_answer(session, gold[0], bob, 45)
    add_answer(session, gold[1], bob, 50)  # MAE 7.5: not flagged
    add_answer(session, gold[0], ann, 90)  # MAE 50, but one answer < gold_min_answers: not flagged
    assert flagged_annotators(session, project.id, project.config) == {cat.id}

    add_answer(session, selected[0], bob, 20)
    add_answer(session, selected[0], cat, 80)
    add_answer(session, selected[1], cat, 70)  # only the flagged annotator answered: the answer stays
    add_answer(session, selected[2], ann, 10)
    add_answer(session, selected[2], cat, 90)
    close_round(session, round_, closed_by=session.get(User, project.owner_id))
    aggregate(round_.id)

    results = [query.result_sigma_index for query in selected]
    assert results == ([20, 70, 10] if exclude_flagged else [50, 70, 50])
