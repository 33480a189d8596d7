from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX
from backend.deps import CurrentUser, SessionDep, SettingsDep
from backend.errors import NotFound
from backend.examples import service

router = APIRouter(prefix="/examples", tags=["examples"])

ExampleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


async def _scopes(request: Request, _user: CurrentUser) -> frozenset[str]:  # async: no thread hop
    """What the signed-in caller's role and token allow (set while the caller was authenticated)."""
    scopes: frozenset[str] = request.state.scopes
    return scopes


CallerScopes = Annotated[frozenset[str], Depends(_scopes)]
# Images of an example never change (a re-import makes new example rows): browsers may keep them.
CACHE = {"Cache-Control": "private, max-age=86400, immutable"}
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


@router.get("/{example_id}/image.png", response_class=Response, responses=PNG)
def example_image(
    example_id: ExampleId, user: CurrentUser, scopes: CallerScopes, session: SessionDep, settings: SettingsDep
) -> Response:
    """The clean image as PNG."""
    example, project = service.get_visible_example(session, example_id, user, scopes)
    image = service.clean_image(settings, project, example)
    return Response(service.png_bytes(image), media_type="image/png", headers=CACHE)


@router.get(
    "/{example_id}/noise",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def example_noise(
    example_id: ExampleId, user: CurrentUser, scopes: CallerScopes, session: SessionDep
) -> Response:
    """The example's fixed noise field ε: float32 little-endian, shape in the X-Noise-Shape header (H,W,C)."""
    example, project = service.get_visible_example(session, example_id, user, scopes)
    if not project.image_shape:
        raise NotFound(f"the images of project {project.id} are not imported yet")
    shape = tuple(int(size) for size in project.image_shape)
    noise = service.epsilon(project, example, shape)
    headers = {**CACHE, "X-Noise-Shape": ",".join(str(size) for size in shape)}
    return Response(service.noise_bytes(noise), media_type="application/octet-stream", headers=headers)


@router.get("/{example_id}/render.png", response_class=Response, responses=PNG)
def example_render(
    example_id: ExampleId,
    user: CurrentUser,
    scopes: CallerScopes,
    session: SessionDep,
    settings: SettingsDep,
    sigma_index: Annotated[int, Query(ge=LADDER_MIN_INDEX, le=LADDER_MAX_INDEX)],
) -> Response:
    """The image at a σ of the ladder, rendered on the server: clip(x + σ·ε, 0, 1) as PNG."""
    example, project = service.get_visible_example(session, example_id, user, scopes)
    image = service.clean_image(settings, project, example)
    return Response(
        service.png_bytes(service.rendered(image, project, example, sigma_index)),
        media_type="image/png",
        headers=CACHE,
    )
