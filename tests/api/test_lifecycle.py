"""The lifecycles of rounds and projects (backend/rounds/lifecycle.py, backend/projects/lifecycle.py)
on a real database: the transition tables, the one next-job function, and that nothing else assigns
a state."""

from __future__ import annotations

import re

import pytest

from backend.models import Project, ProjectStatus, ProjectStep, Role, Round, RoundState
from backend.projects import lifecycle as project_lifecycle
from backend.rounds import lifecycle as round_lifecycle
from tests.api.factories import Api, make_project, make_round, make_user
from tests.api.platform_support import make_ready_project, queued_tasks
from tests.support import REPO_ROOT


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def test_the_round_table_covers_every_state_and_only_steps_can_fail() -> None:
    assert set(round_lifecycle.TRANSITIONS) == set(RoundState)
    for state, targets in round_lifecycle.TRANSITIONS.items():
        assert (RoundState.failed in targets) == (state not in (RoundState.published, RoundState.failed))
    assert round_lifecycle.TRANSITIONS[RoundState.failed] == round_lifecycle.JOB_STATES


@pytest.mark.parametrize(
    ("source", "to"),
    [
        (RoundState.published, RoundState.scoring),
        (RoundState.annotating, RoundState.training),
        (RoundState.scoring, RoundState.published),
        (RoundState.failed, RoundState.annotating),
        (RoundState.training, RoundState.failed),  # failing takes an error: lifecycle.fail
    ],
)
def test_an_illegal_round_transition_raises_and_changes_nothing(
    api: Api, source: RoundState, to: RoundState
) -> None:
    with api.seed() as session:
        project, _ = make_ready_project(session, api.settings, make_user(session, Role.lead))
        round_ = make_round(session, project, state=source)
        with pytest.raises(round_lifecycle.IllegalTransition):
            round_lifecycle.move(session, round_, to)
        assert round_.state == source
    assert queued_tasks(api.settings) == []


def test_next_jobs_follow_the_state(api: Api) -> None:
    with api.seed() as session:
        project, _ = make_ready_project(
            session, api.settings, make_user(session, Role.lead), num_train=7, score_shard_size=4
        )
        round_ = make_round(session, project, number=3)
        expected = {
            RoundState.scoring: [("scoring.score", (round_.id, 0, 4)), ("scoring.score", (round_.id, 4, 7))],
            RoundState.annotating: [],
            RoundState.aggregating: [("rounds.aggregate", (round_.id,))],
            RoundState.training: [("training.finetune", (round_.id,))],
            RoundState.evaluating: [("evaluation.evaluate", (project.id, 3))],
            RoundState.published: [],
            RoundState.failed: [],
        }
        for state, jobs in expected.items():
            round_.state = state
            assert round_lifecycle.next_jobs(round_, project) == jobs, state


def test_a_move_stamps_records_progress_and_sends_the_next_job(api: Api) -> None:
    with api.seed() as session:
        project, _ = make_ready_project(session, api.settings, make_user(session, Role.lead))
        round_ = make_round(session, project, state=RoundState.scoring)
        round_lifecycle.move(session, round_, RoundState.annotating, total=6)
        assert round_.annotating_at is not None and round_.progress == {
            "step": "annotating",
            "done": 0,
            "total": 6,
        }
        round_lifecycle.move(session, round_, RoundState.aggregating)
        assert round_.closed_at is not None
        round_id = round_.id
    assert queued_tasks(api.settings) == [("rounds.aggregate", [round_id])]


def test_fail_then_retry_resumes_the_failed_step_with_the_same_job(api: Api) -> None:
    with api.seed() as session:
        project, _ = make_ready_project(session, api.settings, make_user(session, Role.lead))
        round_ = make_round(session, project, state=RoundState.training)
        round_lifecycle.fail(session, round_, "out of memory")
        assert (round_.state, round_.failed_state, round_.error) == (
            RoundState.failed,
            RoundState.training,
            "out of memory",
        )
        with pytest.raises(round_lifecycle.IllegalTransition):
            round_lifecycle.fail(session, round_, "twice")
        round_lifecycle.move(session, round_, round_lifecycle.resume_state(round_))
        assert (round_.state, round_.failed_state, round_.error) == (RoundState.training, None, None)
        round_id = round_.id
    assert queued_tasks(api.settings) == [("training.finetune", [round_id])]


def test_resume_after_a_restart_sends_the_same_jobs_as_launch(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead, num_train=5, score_shard_size=5)
        rounds = {
            state: make_round(session, project, number=number, state=state)
            for number, state in enumerate(RoundState, start=1)
        }
        importing = make_project(session, lead)
        project_lifecycle.begin(session, importing, awaiting_upload=False)
        waiting = make_project(session, lead)
        project_lifecycle.begin(session, waiting, awaiting_upload=True)
    queued_at_launch = queued_tasks(api.settings)
    assert queued_at_launch == [("datasets.import", [importing.id])]
    with api.seed() as session:
        assert round_lifecycle.resend_interrupted(session) == 4
        assert project_lifecycle.resend_interrupted(session) == 1
    assert queued_tasks(api.settings) == sorted(
        [
            *queued_at_launch,
            ("datasets.import", [importing.id]),
            ("evaluation.evaluate", [project.id, rounds[RoundState.evaluating].number]),
            ("rounds.aggregate", [rounds[RoundState.aggregating].id]),
            ("scoring.score", [rounds[RoundState.scoring].id, 0, 5]),
            ("training.finetune", [rounds[RoundState.training].id]),
        ]
    )


def test_the_project_steps_lead_to_ready_in_order_and_status_follows(api: Api) -> None:
    with api.seed() as session:
        project = make_project(session, make_user(session, Role.lead))
        project_lifecycle.begin(session, project, awaiting_upload=True)
        seen = [(project_lifecycle.step_of(project), project.status)]
        with pytest.raises(project_lifecycle.IllegalTransition):
            project_lifecycle.advance(session, project, ProjectStep.pretraining)  # skips the import
        for step in (
            ProjectStep.importing,
            ProjectStep.pretraining,
            ProjectStep.evaluating,
            ProjectStep.ready,
        ):
            project_lifecycle.advance(session, project, step)
            seen.append((project_lifecycle.step_of(project), project.status))
        assert project.progress is None
        project_id = project.id
    assert seen == [
        (ProjectStep.awaiting_upload, ProjectStatus.importing),
        (ProjectStep.importing, ProjectStatus.importing),
        (ProjectStep.pretraining, ProjectStatus.pretraining),
        (ProjectStep.evaluating, ProjectStatus.pretraining),
        (ProjectStep.ready, ProjectStatus.ready),
    ]
    assert queued_tasks(api.settings) == [
        ("datasets.import", [project_id]),
        ("evaluation.evaluate", [project_id, 0]),
        ("training.pretrain", [project_id]),
    ]


def test_a_failed_project_keeps_its_step_and_retry_sends_its_job(api: Api) -> None:
    with api.seed() as session:
        project = make_project(session, make_user(session, Role.lead))
        project_lifecycle.begin(session, project, awaiting_upload=False)
        project_lifecycle.advance(session, project, ProjectStep.pretraining)
        project_lifecycle.record_progress(project, 3, 10)
        project_lifecycle.fail(project, "diverged")
        assert project.status == ProjectStatus.failed
        assert project.progress == {"step": "pretraining", "done": 3, "total": 10}
        assert project_lifecycle.next_jobs(project) == []
        with pytest.raises(project_lifecycle.IllegalTransition):
            project_lifecycle.advance(session, project, ProjectStep.evaluating)
        project_lifecycle.retry(session, project)
        assert (project.status, project.error) == (ProjectStatus.pretraining, None)
        project_id = project.id
    sent_then_retried = [("datasets.import", [project_id]), *[("training.pretrain", [project_id])] * 2]
    assert queued_tasks(api.settings) == sent_then_retried


# `round_.state = ...`, `project.progress = ...`, and keyword forms: `Round(state=RoundState.x)`,
# `.values(status=ProjectStatus.x)`.
STATE_ASSIGNMENT = re.compile(
    r"\.(state|status|failed_state|progress)\s*=(?!=)|\b(state|status)\s*=\s*(RoundState|ProjectStatus)\."
)
LIFECYCLES = {"backend/rounds/lifecycle.py", "backend/projects/lifecycle.py"}


def test_no_round_or_project_state_is_assigned_outside_the_lifecycles() -> None:
    """Annotator assignments (backend/tasks) and webhook deliveries (backend/webhooks) have states of
    their own; everything else goes through the two lifecycle modules."""
    offenders = []
    for package in ("backend", "worker", "cli"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            name = str(path.relative_to(REPO_ROOT))
            if name in LIFECYCLES:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if STATE_ASSIGNMENT.search(line) and not re.search(
                    r"assignment\.state|delivery\.status|self\.progress", line
                ):
                    offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []


def test_the_lifecycles_are_what_models_default_to() -> None:
    assert Round.__table__.c.state.default.arg == RoundState.scoring
    assert Project.__table__.c.status.default.arg == project_lifecycle.STATUS_OF[ProjectStep.importing]
