"""Example images over HTTP: the clean PNG, the fixed ε the browser draws with, and server renders."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aqpl.noise_field import noise_field, render_at_sigma
from backend.models import Example, Project, Role, Split
from tests.api.factories import Api, make_examples, make_project, make_user, write_project_images


def seed(
    api: Api, image_shape: tuple[int, int, int]
) -> tuple[Project, list[Example], np.ndarray, dict[str, str]]:
    """A project with 3 train and 2 test images on disk; returns it, its examples, the array and the
    headers of its lead (who may see its images: tests/security/test_example_access.py has the rest)."""
    with api.seed() as session:
        owner = make_user(session, Role.lead)
        project = make_project(session, owner, image_shape=image_shape)
        examples = make_examples(session, project, 3) + make_examples(session, project, 2, Split.test)
    images = write_project_images(api.settings, project, seed=5)
    return project, examples, images, api.headers_for(owner)


def decode_png(content: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(content)) as image:
        return np.asarray(image)


@pytest.mark.parametrize("image_shape", [(6, 5, 3), (7, 4, 1)])
def test_image_png_is_the_stored_image(api: Api, image_shape: tuple[int, int, int]) -> None:
    project, examples, images, headers = seed(api, image_shape)
    for row, example in ((1, examples[1]), (project.num_train + 1, examples[4])):  # a train and a test image
        response = api.client.get(f"/api/v1/examples/{example.id}/image.png", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        decoded = decode_png(response.content)
        np.testing.assert_array_equal(decoded.reshape(image_shape), images[row])


def test_noise_is_the_fixed_epsilon_as_little_endian_float32(api: Api) -> None:
    project, examples, _images, headers = seed(api, (6, 5, 3))
    example = examples[2]
    response = api.client.get(f"/api/v1/examples/{example.id}/noise", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-noise-shape"] == "6,5,3"
    received = np.frombuffer(response.content, dtype="<f4").reshape(6, 5, 3)
    expected = noise_field((6, 5, 3), project_seed=project.noise_seed, example_index=example.id)
    np.testing.assert_array_equal(received, expected)
    again = api.client.get(f"/api/v1/examples/{example.id}/noise", headers=headers)
    assert again.content == response.content
    other = api.client.get(f"/api/v1/examples/{examples[0].id}/noise", headers=headers)
    assert other.content != response.content


@pytest.mark.parametrize("sigma_index", [0, 37, 90])
def test_render_png_is_render_at_sigma_of_the_image_and_its_epsilon(api: Api, sigma_index: int) -> None:
    project, examples, images, headers = seed(api, (6, 5, 3))
    example = examples[0]
    response = api.client.get(
        f"/api/v1/examples/{example.id}/render.png", params={"sigma_index": sigma_index}, headers=headers
    )
    assert response.status_code == 200
    epsilon = noise_field((6, 5, 3), project_seed=project.noise_seed, example_index=example.id)
    np.testing.assert_array_equal(
        decode_png(response.content), render_at_sigma(images[0], epsilon, sigma_index)
    )


def test_example_endpoints_refuse_bad_requests(api: Api) -> None:
    _project, examples, _images, headers = seed(api, (6, 5, 3))
    path = f"/api/v1/examples/{examples[0].id}"
    for sigma_index in ("91", "-1", "x"):
        response = api.client.get(f"{path}/render.png", params={"sigma_index": sigma_index}, headers=headers)
        assert response.status_code == 422
    assert api.client.get(f"{path}/render.png", headers=headers).status_code == 422
    assert api.client.get("/api/v1/examples/999999/image.png", headers=headers).status_code == 404
    assert api.client.get(f"/api/v1/examples/{2**40}/noise", headers=headers).status_code == 422
    assert api.client.get(f"{path}/image.png").status_code == 401


def test_images_not_imported_yet_are_404(api: Api) -> None:
    with api.seed() as session:
        owner = make_user(session, Role.lead)
        project = make_project(session, owner)
        example = make_examples(session, project, 1)[0]
    headers = api.headers_for(owner)
    response = api.client.get(f"/api/v1/examples/{example.id}/image.png", headers=headers)
    assert response.status_code == 404
    assert "not imported" in response.json()["detail"]
