"""Projects: creation (then the worker imports and pretrains), reads, examples, metrics and export.

Services flush, never commit; worker steps are sent with enqueue_after_commit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from aqpl.datasets import DatasetError, DatasetInfo, DatasetLimits, inspect_dataset
from backend import storage
from backend.checkpoints.repository import checkpoint_read
from backend.errors import Conflict, DomainError, InvalidInput, Loc, NotFound
from backend.models import Project, ProjectStatus, ProjectStep, Role, SigmaSource, Split, User
from backend.projects import lifecycle, repository
from backend.projects.config import ProjectConfig
from backend.projects.schemas import (
    ExamplePage,
    ExampleRead,
    ProjectCreate,
    ProjectMetrics,
    ProjectRead,
    ProjectSummary,
    RoundMetrics,
    SigmaCounts,
)
from backend.rounds.repository import round_read
from backend.settings import Settings

# Formats read from a file or folder; "digits" ships with scikit-learn.
FORMATS_WITH_PATH = frozenset({"mnist", "cifar10", "npz", "imagefolder"})
# Where ProjectCreate gives the dataset path: its problems are reported there, next to the form's field.
DATASET_PATH: Loc = ("body", "dataset", "path")
EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "example_id",
    "split",
    "dataset_index",
    "label",
    "sigma_index",
    "sigma_source",
    "sigma_round",
    "sigma_history",
    "answers",
    "oracle_answers",
)


def can_manage(user: User | None, project: Project) -> bool:
    """Admins manage every project, leads their own; None is the platform itself (worker, demo)."""
    if user is None or user.role == Role.admin:
        return True
    return user.role == Role.lead and project.owner_id == user.id


def ensure_can_manage(user: User | None, project: Project) -> None:
    """404, as for a project that does not exist, unless the user may manage it: a project the caller
    may not see is not disclosed (callers that found it through another row say that row's 404)."""
    if not can_manage(user, project):
        raise NotFound(f"project {project.id} does not exist")


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    project = repository.get(session, project_id, for_update=for_update)
    if project is None:
        raise NotFound(f"project {project_id} does not exist")
    return project


def get_managed_project(session: Session, user: User | None, project_id: int) -> Project:
    project = get_project(session, project_id)
    ensure_can_manage(user, project)
    return project


def dataset_limits(settings: Settings, *, upload: bool = False) -> DatasetLimits:
    """The size limit of a dataset (AQPL_MAX_DATASET_BYTES); an upload must also unpack within its own."""
    if upload and settings.max_upload_bytes < settings.max_dataset_bytes:
        return DatasetLimits(settings.max_upload_bytes, "AQPL_MAX_UPLOAD_BYTES")
    return DatasetLimits(settings.max_dataset_bytes, "AQPL_MAX_DATASET_BYTES")


def check_dataset(
    settings: Settings,
    dataset_format: str,
    path: Path,
    *,
    upload_dir: Path | None = None,
    loc: Loc | None = None,
) -> DatasetInfo:
    """422 (at `loc`) naming the file and the problem unless `path` reads as a `dataset_format` dataset.

    The worker's own reader (aqpl.datasets) in its header mode, with the worker's limit: what passes
    here does not fail there for its format or size. It never reads a file through a link that leaves
    the import root or enters the platform's own files (an upload: its project's upload folder), and
    names files relative to the dataset (server paths stay private).
    """
    root = storage.import_root(settings) if upload_dir is None else upload_dir.resolve()

    def inside_root(file: Path) -> None:
        resolved = file.resolve()
        outside = resolved != root and root not in resolved.parents
        if outside or (upload_dir is None and storage.is_private(settings, resolved)):
            shown = file.relative_to(path).as_posix() if file.is_relative_to(path) else file.name
            raise InvalidInput(
                f"{shown}: a link that points outside the import root; copy the file instead", loc=loc
            )

    limits = dataset_limits(settings, upload=upload_dir is not None)
    try:
        return inspect_dataset(dataset_format, path, limits=limits, guard=inside_root)
    except DatasetError as error:
        message = str(error).replace(f"{path}/", "").replace(str(path), path.name)
        raise InvalidInput(message, loc=loc) from error


def project_config(settings: Settings, body: ProjectCreate) -> ProjectConfig:
    """The stored configuration: the request minus the name, the dataset path resolved and checked."""
    config = body.to_config()
    dataset = config.dataset
    if dataset.format in FORMATS_WITH_PATH:
        if dataset.path is not None:
            path = storage.resolve_import_path(settings, dataset.path, loc=DATASET_PATH)
            check_dataset(settings, dataset.format, path, loc=DATASET_PATH)
            return config.model_copy(update={"dataset": dataset.model_copy(update={"path": str(path)})})
    elif dataset.path is not None:
        raise InvalidInput(f"dataset format {dataset.format!r} takes no path", loc=DATASET_PATH)
    return config


def create_project(session: Session, settings: Settings, owner: User, body: ProjectCreate) -> Project:
    """A new project in `importing`; the worker imports, pretrains and evaluates it."""
    config = project_config(settings, body)
    awaiting_upload = config.dataset.format in FORMATS_WITH_PATH and config.dataset.path is None
    project = Project(name=body.name, owner_id=owner.id, config=config, noise_seed=body.seed)
    lifecycle.begin(session, project, awaiting_upload=awaiting_upload)
    return project


def ensure_awaiting_upload(project: Project) -> None:
    """409 unless the project was created without a dataset path and still waits for its upload."""
    if not lifecycle.is_at(project, ProjectStep.awaiting_upload):
        raise Conflict(
            f"project {project.id} is not waiting for a dataset upload (status {project.status.value})"
        )


def authorise_upload(session: Session, user: User, project_id: int) -> None:
    """404 unless the user manages the project, 409 unless it waits for its upload: before a byte of
    the upload is read."""
    ensure_awaiting_upload(get_managed_project(session, user, project_id))


def store_upload(
    session: Session, settings: Settings, user: User, project_id: int, filename: str, stream: BinaryIO
) -> Project:
    """Keep an upload in the project's own folder (outside the import root) and import it.

    The project's row is locked first: of two uploads at once, the second waits, then gets 409 and
    touches no file. A refused dataset leaves no file behind.
    """
    project = get_project(session, project_id, for_update=True)
    ensure_can_manage(user, project)
    ensure_awaiting_upload(project)  # before a byte is stored: never overwrite an import's files
    path = storage.save_upload(settings, project.id, filename, stream)
    try:
        return attach_upload(session, settings, project, path)
    except DomainError:
        storage.discard_upload(settings, project.id)
        raise


def attach_upload(session: Session, settings: Settings, project: Project, path: Path) -> Project:
    """Point an awaiting project at its uploaded dataset (`path`, in its upload folder) and import it."""
    ensure_awaiting_upload(project)
    folder = storage.uploads_dir(settings, project.id)
    config = project.config
    check_dataset(settings, config.dataset.format, path, upload_dir=folder)
    project.config = config.model_copy(
        update={"dataset": config.dataset.model_copy(update={"path": str(path)})}
    )
    lifecycle.advance(session, project, ProjectStep.importing)
    return project


def retry_project(session: Session, project: Project) -> Project:
    """Resume a failed project at the step that failed (import, pretraining or evaluation)."""
    lifecycle.retry(session, project)
    return project


def project_summary(project: Project) -> ProjectSummary:
    return ProjectSummary(
        id=project.id,
        name=project.name,
        status=project.status.value,
        error=project.error,
        num_train=project.num_train,
        num_test=project.num_test,
        created_at=project.created_at,
    )


def shown_config(settings: Settings, project: Project) -> ProjectConfig:
    """The configuration as responses show it: the dataset path relative to the import root (an
    upload's as `upload:<path>`), never a server path."""
    dataset = project.config.dataset
    shown = storage.shown_dataset_path(settings, project.id, dataset.path)
    return project.config.model_copy(update={"dataset": dataset.model_copy(update={"path": shown})})


def project_read(session: Session, settings: Settings, project: Project) -> ProjectRead:
    progress = project.progress if project.progress and project.status != ProjectStatus.ready else None
    current_round = repository.latest_round(session, project.id)
    checkpoint = repository.latest_checkpoint(session, project.id)
    return ProjectRead(
        id=project.id,
        name=project.name,
        status=project.status.value,
        error=project.error,
        config=shown_config(settings, project),
        image_shape=project.image_shape,
        class_names=project.class_names,
        num_train=project.num_train,
        num_test=project.num_test,
        progress=progress,  # validated into Progress
        counts=SigmaCounts(**repository.sigma_source_counts(session, project.id)),
        sigma_histogram=repository.sigma_histogram(session, project.id),
        current_round=round_read(session, current_round) if current_round else None,
        latest_checkpoint=checkpoint_read(checkpoint) if checkpoint else None,
        created_at=project.created_at,
    )


def list_projects(session: Session, user: User) -> list[ProjectSummary]:
    return [project_summary(project) for project in repository.list_visible(session, user)]


def list_examples(
    session: Session,
    project: Project,
    *,
    split: Split | None,
    sigma_source: SigmaSource | None,
    offset: int,
    limit: int,
) -> ExamplePage:
    class_names = project.class_names or []
    show_class = project.config.show_class_name
    items = [
        ExampleRead(
            id=example.id,
            dataset_index=example.dataset_index,
            split=example.split.value,
            label=example.label,
            class_name=class_names[example.label]
            if show_class and example.label < len(class_names)
            else None,
            sigma_index=example.sigma_index,
            sigma_source=example.sigma_source.value,
            sigma_round=example.sigma_round,
            image_url=f"/api/v1/examples/{example.id}/image.png",
        )
        for example in repository.page_examples(session, project.id, split, sigma_source, offset, limit)
    ]
    total = repository.count_examples(session, project.id, split, sigma_source)
    return ExamplePage(total=total, offset=offset, limit=limit, items=items)


def project_metrics(session: Session, project: Project) -> ProjectMetrics:
    """Per published checkpoint (round 0 = pretraining): cumulative queries, accuracies, σ histograms."""
    checkpoints = repository.checkpoints_by_round(session, project.id)
    rounds = {round_.number: round_ for round_ in repository.rounds_of(session, project.id)}
    query_counts = repository.query_counts_by_round(session, project.id)
    numbers = sorted(set(checkpoints) | set(rounds))
    rows: list[RoundMetrics] = []
    cumulative = 0
    for number in numbers:
        cumulative += query_counts.get(number, 0)
        metrics = checkpoints[number].metrics if number in checkpoints else {}
        round_ = rounds.get(number)
        rows.append(
            RoundMetrics(
                round=number,
                queries=cumulative,
                clean=_metric(metrics, "clean"),
                gaussian=_metric(metrics, "gaussian"),
                corruptions=_metric(metrics, "corruptions"),
                sigma_histogram_before=round_.sigma_histogram_before if round_ else None,
                sigma_histogram_after=round_.sigma_histogram_after if round_ else None,
                krippendorff_alpha=round_.krippendorff_alpha if round_ else None,
            )
        )
    return ProjectMetrics(rounds=rows)


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if isinstance(value, int | float) else None


def export_lines(session: Session, project: Project, export_format: str) -> Iterator[str]:
    """The export, line by line: every triplet with its σ history, every raw answer and σ_o."""
    if export_format not in EXPORT_FORMATS:
        raise InvalidInput(f"unknown export format {export_format!r}: choose csv or jsonl")
    rows = repository.iter_export_rows(session, project.id)
    if export_format == "jsonl":
        for row in rows:
            yield json.dumps(row, separators=(",", ":")) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                json.dumps(row[column], separators=(",", ":"))
                if column in ("sigma_history", "answers", "oracle_answers")
                else row[column]
                for column in EXPORT_COLUMNS
            ]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
