"""What annotators see of an example: the clean image, its fixed noise field ε, and renders at a σ.

Only for those who may see it: whoever may manage its project (with the `manage` scope), and an
annotator holding a live lease on a query of it (with `annotate`). Anyone else gets the 404 of an
example that does not exist.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from PIL import Image
from sqlalchemy.orm import Session

from aqpl.noise_field import noise_field, render_at_sigma
from backend import storage
from backend.auth.scopes import ANNOTATE, MANAGE
from backend.errors import NotFound
from backend.examples import repository
from backend.models import Example, Project, User
from backend.projects.service import can_manage
from backend.settings import Settings


def get_visible_example(
    session: Session, example_id: int, user: User, scopes: frozenset[str]
) -> tuple[Example, Project]:
    """The example and its project if `user` (whose request holds `scopes`) may see it, else 404.

    One statement: the annotation page asks for these images on every task.
    """
    found = repository.example_with_lease(session, example_id, user.id, datetime.now(UTC))
    if found is not None:
        example, project, leased = found
        if (MANAGE in scopes and can_manage(user, project)) or (ANNOTATE in scopes and leased):
            return example, project
    raise NotFound(f"example {example_id} not found")


def clean_image(settings: Settings, project: Project, example: Example) -> npt.NDArray[np.uint8]:
    """(H, W, C) uint8; 404 if the project's images are not imported yet."""
    if not storage.images_path(settings, project.id).exists():
        raise NotFound(f"the images of project {project.id} are not imported yet")
    return storage.example_image(settings, project, example)


def epsilon(project: Project, example: Example, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """The example's fixed ε, keyed on its database id (`example.id`): the server's and the browser's."""
    return noise_field(shape, project_seed=project.noise_seed, example_index=example.id)


def rendered(
    image: npt.NDArray[np.uint8], project: Project, example: Example, sigma_index: int
) -> npt.NDArray[np.uint8]:
    return render_at_sigma(image, epsilon(project, example, image.shape), sigma_index)


def png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """PNG of an (H, W, C) uint8 image: greyscale for C = 1, RGB for C = 3."""
    pixels = image[:, :, 0] if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_bytes(noise: npt.NDArray[np.float32]) -> bytes:
    """ε as float32 little-endian, row-major (H, W, C)."""
    return np.ascontiguousarray(noise, dtype="<f4").tobytes()
