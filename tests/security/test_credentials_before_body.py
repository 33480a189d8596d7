"""Issue 13, item 11: a request is authenticated before its body is read.

FastAPI reads (and parses) a body before an endpoint's dependencies run, so an anonymous 50 MB upload
was taken in whole before its 401. Here the app is called as the server calls it, with a `receive`
that records whether the body was asked for: refusals must come without asking. The same through a
real socket, against `aqpl serve`, is in test_served_process.py.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field

import numpy as np
import pytest
from starlette.types import Message

from backend.auth.service import create_api_token
from backend.models import Role
from tests.api.factories import Api, make_user

FIFTY_MB = 50 * 1024 * 1024


@dataclass
class Exchange:
    status: int = 0
    body_read: bool = False
    sent: list[Message] = field(default_factory=list)


def call(
    api: Api, path: str, headers: dict[str, str], *, content_type: str, body: bytes | None = None
) -> Exchange:
    """POST `path` straight into the app; the declared body is 50 MB unless `body` is given (then sent)."""
    exchange = Exchange()
    length = FIFTY_MB if body is None else len(body)
    raw_headers = [
        (b"host", b"testserver"),
        (b"content-type", content_type.encode()),
        (b"content-length", str(length).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def receive() -> Message:
        exchange.body_read = True
        if body is None:  # the client would now send 50 MB: stop it here
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        exchange.sent.append(message)
        if message["type"] == "http.response.start":
            exchange.status = message["status"]

    asyncio.run(api.app(scope, receive, send))
    return exchange


MULTIPART = "multipart/form-data; boundary=aqpl"


@dataclass(frozen=True)
class People:
    owner: dict[str, str]
    other_lead: dict[str, str]
    annotator: dict[str, str]
    checkpoint_token: dict[str, str]
    project_id: int


@pytest.fixture(scope="module")
def people(api: Api) -> People:
    with api.seed() as session:
        owner, other, annotator = (
            make_user(session, Role.lead),
            make_user(session, Role.lead),
            make_user(session),
        )
        _row, reader = create_api_token(session, owner, "reader", ["checkpoints:read"], None)
    headers = api.headers_for(owner)
    created = api.client.post(
        "/api/v1/projects", json={"name": "u", "dataset": {"format": "npz"}}, headers=headers
    )
    assert created.status_code == 201, created.text
    return People(
        headers,
        api.headers_for(other),
        api.headers_for(annotator),
        {"Authorization": f"Bearer {reader}"},
        created.json()["id"],
    )


def test_an_anonymous_upload_is_refused_unread(api: Api, people: People) -> None:
    exchange = call(api, f"/api/v1/projects/{people.project_id}/dataset", {}, content_type=MULTIPART)
    assert (exchange.status, exchange.body_read) == (401, False)


def test_an_anonymous_json_body_is_refused_unread(api: Api) -> None:
    for path in ("/api/v1/projects", "/api/v1/tasks/1/annotation", "/api/v1/users", "/api/v1/nowhere"):
        exchange = call(api, path, {}, content_type="application/json")
        assert (exchange.status, exchange.body_read) == (401, False), path


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("a token that does not exist", 401),
        ("a session cookie that does not exist", 401),
        ("an annotator", 403),
        ("a checkpoints:read token", 403),
        ("another lead", 404),
    ],
)
def test_an_upload_is_authorised_before_its_body_is_read(
    api: Api, people: People, who: str, status: int
) -> None:
    headers = {
        "a token that does not exist": {"Authorization": "Bearer nope"},
        "a session cookie that does not exist": {"Cookie": "aqpl_session=nope", "X-CSRF-Token": "x"},
        "an annotator": people.annotator,
        "a checkpoints:read token": people.checkpoint_token,
        "another lead": people.other_lead,
    }[who]
    exchange = call(api, f"/api/v1/projects/{people.project_id}/dataset", headers, content_type=MULTIPART)
    assert (exchange.status, exchange.body_read) == (status, False)


def test_the_owner_s_upload_is_read_and_stored(api: Api, people: People) -> None:
    images = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=images, y_train=np.arange(4) % 2, x_test=images[:2], y_test=np.arange(2))
    body = (
        b"--aqpl\r\n"
        b'Content-Disposition: form-data; name="file"; filename="d.npz"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + buffer.getvalue() + b"\r\n--aqpl--\r\n"
    )
    exchange = call(
        api, f"/api/v1/projects/{people.project_id}/dataset", people.owner, content_type=MULTIPART, body=body
    )
    assert (exchange.status, exchange.body_read) == (200, True), exchange.sent
    again = call(api, f"/api/v1/projects/{people.project_id}/dataset", people.owner, content_type=MULTIPART)
    assert (again.status, again.body_read) == (409, False)  # no longer waiting: refused unread


def test_an_upload_without_its_file_field_is_a_422(api: Api) -> None:
    with api.seed() as session:
        owner = make_user(session, Role.lead)
    headers = api.headers_for(owner)
    created = api.client.post(
        "/api/v1/projects", json={"name": "u", "dataset": {"format": "npz"}}, headers=headers
    )
    url = f"/api/v1/projects/{created.json()['id']}/dataset"
    response = api.client.post(url, data={"other": "x"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["body", "file"], "msg": response.json()["detail"]}]
    assert api.client.post(url, json={"file": "x"}, headers=headers).status_code == 422
