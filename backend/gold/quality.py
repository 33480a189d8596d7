"""Annotator quality against gold: error per person, who is flagged, and whose answers aggregation keeps.

Errors are in ladder steps (σ = index / 100). A person is flagged in a project once they have given
at least `gold_min_answers` gold answers there and their mean absolute error exceeds `gold_max_error`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend.gold import repository
from backend.gold.repository import GoldScore
from backend.projects.config import ProjectConfig


@dataclass(frozen=True)
class GoldQuality:
    """One person's gold answers (over the projects asked about) and whether a project flags them."""

    answers: int
    mean_absolute_error: float | None  # ladder steps; None without gold answers
    mean_error: float | None  # signed: positive answers a stronger σ than the known one
    flagged: bool


def is_flagged(score: GoldScore, config: ProjectConfig) -> bool:
    """Past the project's threshold, on enough answers."""
    return score.answers >= config.gold_min_answers and (
        score.absolute_error_sum / score.answers > config.gold_max_error
    )


def quality_by_annotator(
    scores: Iterable[GoldScore], configs: Mapping[int, ProjectConfig]
) -> dict[int, GoldQuality]:
    """Per annotator: the errors over every listed project's gold answers; flagged if any project flags
    them (each by its own threshold, on its own answers)."""
    answers: dict[int, int] = {}
    absolute: dict[int, float] = {}
    signed: dict[int, float] = {}
    flagged: set[int] = set()
    for score in scores:
        person = score.annotator_id
        answers[person] = answers.get(person, 0) + score.answers
        absolute[person] = absolute.get(person, 0.0) + score.absolute_error_sum
        signed[person] = signed.get(person, 0.0) + score.error_sum
        config = configs.get(score.project_id)
        if config is not None and is_flagged(score, config):
            flagged.add(person)
    return {
        person: GoldQuality(
            answers=count,
            mean_absolute_error=absolute[person] / count,  # count ≥ 1: a score is of some answers
            mean_error=signed[person] / count,
            flagged=person in flagged,
        )
        for person, count in answers.items()
    }


def flagged_annotators(session: Session, project_id: int, config: ProjectConfig) -> set[int]:
    """The project's flagged annotators."""
    scores = repository.gold_scores(session, [project_id])
    return {score.annotator_id for score in scores if is_flagged(score, config)}


def kept_answers(answers: Iterable[tuple[int, int]], excluded: Collection[int]) -> list[int]:
    """The σ indices that count towards a query's consensus: `answers` are (annotator id, σ index); the
    excluded (flagged) annotators' answers are left out, unless that would leave none (then all stay:
    a query answered only by flagged people keeps its answers rather than losing its σ)."""
    answers = list(answers)
    kept = [sigma for annotator, sigma in answers if annotator not in excluded]
    return kept if kept else [sigma for _annotator, sigma in answers]
