"""The read model of the project page's server-rendered panels: the rounds table and the two charts."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup
from sqlalchemy.orm import Session

from backend.annotations.oracle_agreement import OracleAgreement, oracle_agreement
from backend.models import Project, User
from backend.projects import repository as project_repository
from backend.projects import service as project_service
from backend.projects.schemas import RoundMetrics
from backend.rounds.repository import oracle_pairs, round_read
from backend.ui.charts import (
    AccuracyPoint,
    OraclePoint,
    accuracy_chart_svg,
    oracle_scatter_svg,
    sigma_histogram_svg,
)
from backend.ui.timeline_bar import timeline_label, timeline_svg


@dataclass(frozen=True)
class RoundRow:
    """One line of the rounds table; round 0 is the pretrained model."""

    number: int
    state: str
    queries: int | None
    complete_queries: int | None
    answers: int | None
    annotators: int | None
    krippendorff_alpha: float | None
    clean: float | None
    gaussian: float | None
    corruptions: float | None
    checkpoint_id: int | None
    error: str | None
    # The timeline bar (inline SVG built from numbers) and the scoring cost; none for pretraining.
    timeline: Markup | None = None
    timeline_label: str = ""
    forward_passes: int | None = None
    scoring_seconds: float | None = None


@dataclass(frozen=True)
class PanelsView:
    project_id: int
    rounds: list[RoundRow]
    accuracy_chart: Markup
    sigma_chart: Markup
    sigma_caption: str
    # People against the simulated oracle (projects with oracle_reference on; None otherwise).
    oracle_chart: Markup | None = None
    oracle_agreement: OracleAgreement | None = None


def managed_project(session: Session, user: User, project_id: int) -> Project:
    """The project if the user may manage it (NotFound otherwise, as for one that does not exist)."""
    return project_service.get_managed_project(session, user, project_id)


def project_panels(session: Session, user: User, project_id: int) -> PanelsView:
    project = managed_project(session, user, project_id)
    metrics = {row.round: row for row in project_service.project_metrics(session, project).rounds}
    checkpoints = project_repository.checkpoints_by_round(session, project.id)
    rows: list[RoundRow] = []
    if 0 in checkpoints:
        rows.append(_row_of_pretraining(metrics.get(0), checkpoints[0].id))
    for round_ in project_repository.rounds_of(session, project.id):
        read = round_read(session, round_)
        metric = metrics.get(round_.number)
        rows.append(
            RoundRow(
                number=round_.number,
                state=read.state,
                queries=read.counts.queries,
                complete_queries=read.counts.complete_queries,
                answers=read.counts.answers,
                annotators=read.counts.annotators,
                krippendorff_alpha=read.krippendorff_alpha,
                clean=metric.clean if metric else None,
                gaussian=metric.gaussian if metric else None,
                corruptions=metric.corruptions if metric else None,
                checkpoint_id=read.checkpoint_id,
                error=read.error,
                timeline=Markup(timeline_svg(read.state_seconds)),  # noqa: S704  # numbers, text escaped
                timeline_label=timeline_label(read.state_seconds),
                forward_passes=read.forward_passes,
                scoring_seconds=read.scoring_seconds,
            )
        )
    points = [
        AccuracyPoint(
            queries=row.queries, clean=row.clean, gaussian=row.gaussian, corruptions=row.corruptions
        )
        for number, row in sorted(metrics.items())
        if number in checkpoints and any(v is not None for v in (row.clean, row.gaussian, row.corruptions))
    ]
    closed = [row for _, row in sorted(metrics.items()) if row.sigma_histogram_after is not None]
    if closed:
        last = closed[-1]
        sigma_chart = sigma_histogram_svg(last.sigma_histogram_before, last.sigma_histogram_after)
        caption = f"Round {last.round}: σ of every training example before the round and after its answers."
    else:
        current = project_repository.sigma_histogram(session, project.id)
        sigma_chart = sigma_histogram_svg(
            current if project.num_train else None,
            None,
            title="σ of the training examples now (no round has closed yet)",
        )
        caption = "Every example starts at the initial σ; the histogram changes once a round closes."
    oracle_chart: Markup | None = None
    agreement: OracleAgreement | None = None
    if project.config.oracle_reference:
        pairs = [OraclePoint(*pair) for pair in oracle_pairs(session, project.id)]
        oracle_chart = Markup(oracle_scatter_svg(pairs))  # noqa: S704  # numbers, text escaped
        agreement = oracle_agreement([p.consensus for p in pairs], [p.oracle for p in pairs])
    return PanelsView(
        project_id=project.id,
        rounds=rows,
        accuracy_chart=Markup(accuracy_chart_svg(points)),  # noqa: S704  # built from numbers, text escaped
        sigma_chart=Markup(sigma_chart),  # noqa: S704  # same
        sigma_caption=caption,
        oracle_chart=oracle_chart,
        oracle_agreement=agreement,
    )


def _row_of_pretraining(metric: RoundMetrics | None, checkpoint_id: int) -> RoundRow:
    return RoundRow(
        number=0,
        state="pretrained",
        queries=None,
        complete_queries=None,
        answers=None,
        annotators=None,
        krippendorff_alpha=None,
        clean=metric.clean if metric else None,
        gaussian=metric.gaussian if metric else None,
        corruptions=metric.corruptions if metric else None,
        checkpoint_id=checkpoint_id,
        error=None,
    )
