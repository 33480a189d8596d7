"""`datasets.import`: read the project's dataset into images.npy and one example row per image."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from backend import storage
from backend.models import Example, Project, ProjectStatus, SigmaSource, Split
from backend.projects.service import STEP_AWAITING_UPLOAD, STEP_IMPORTING, STEP_PRETRAINING, dataset_limits
from backend.queue import enqueue_after_commit
from worker import pipeline
from worker.celery_app import app
from worker.runtime import task_session
from worker.tasks.steps import project_step, settings

INSERT_BATCH = 5000  # example rows per INSERT statement


@app.task(name="datasets.import")
def import_dataset(project_id: int) -> None:
    """importing -> pretraining: write the image array, insert the examples, send `training.pretrain`."""
    with task_session() as session:
        project = session.get(Project, project_id)
        if (
            project is None
            or project.status != ProjectStatus.importing
            or (project.progress or {}).get("step") == STEP_AWAITING_UPLOAD
        ):
            return
        config = dict(project.config)
    with project_step(project_id, STEP_IMPORTING):
        dataset = pipeline.import_dataset(config, limits=dataset_limits(settings()))  # the API's limit
        path = storage.write_images(settings(), project_id, pipeline.stacked_images(dataset))
        initial_sigma = int(config["initial_sigma_index"])
        with task_session() as session:
            project = session.scalar(select(Project).where(Project.id == project_id).with_for_update())
            if project is None or project.status != ProjectStatus.importing:
                return
            # A previous delivery may have died after inserting: start the rows afresh.
            session.execute(delete(Example).where(Example.project_id == project_id))
            for split, labels in ((Split.train, dataset.y_train), (Split.test, dataset.y_test)):
                rows = [
                    {
                        "project_id": project_id,
                        "dataset_index": index,
                        "split": split,
                        "label": int(label),
                        "sigma_index": initial_sigma,
                        "sigma_source": SigmaSource.initial,
                        "sigma_round": 0,
                    }
                    for index, label in enumerate(labels.tolist())
                ]
                for start in range(0, len(rows), INSERT_BATCH):
                    session.execute(insert(Example), rows[start : start + INSERT_BATCH])
            project.dataset_file = storage.relative_to_storage(settings(), path)
            project.image_shape = list(dataset.image_shape)
            project.class_names = list(dataset.class_names)
            project.num_train = len(dataset.y_train)
            project.num_test = len(dataset.y_test)
            project.status = ProjectStatus.pretraining
            project.progress = {"step": STEP_PRETRAINING, "done": 0, "total": 1}
            enqueue_after_commit(session, "training.pretrain", project_id)
