"""`datasets.import`: read the project's dataset into images.npy and one example row per image."""

from __future__ import annotations

from sqlalchemy import delete, insert

from aqpl import job_names
from backend import storage
from backend.models import Example, Project, ProjectStep, SigmaSource, Split
from backend.projects import lifecycle as project_lifecycle
from backend.projects.service import dataset_limits
from worker import pipeline
from worker.celery_app import app
from worker.jobs.steps import project_step, settings
from worker.runtime import job_session

INSERT_BATCH = 5000  # example rows per INSERT statement


@app.task(name=job_names.IMPORT_DATASET)
def import_dataset(project_id: int) -> None:
    """importing -> pretraining: write the image array, insert the examples, send `training.pretrain`."""
    with job_session() as session:
        project = session.get(Project, project_id)
        if project is None or not project_lifecycle.is_at(project, ProjectStep.importing):
            return
        config = project.config
    with project_step(project_id, ProjectStep.importing):
        dataset = pipeline.import_dataset(config, limits=dataset_limits(settings()))  # the API's limit
        path = storage.write_images(settings(), project_id, pipeline.stacked_images(dataset))
        initial_sigma = config.initial_sigma_index
        with job_session() as session:
            project = project_lifecycle.locked_at(session, project_id, ProjectStep.importing)
            if project is None:
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
            project_lifecycle.advance(session, project, ProjectStep.pretraining)
