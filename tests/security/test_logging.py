"""Logging: every process writes one line per event to stderr; audit events; no token or password.

The review found no logging configured at all: the failed logins the docs said were logged went
nowhere. These tests read the real processes' stderr, as a log collector would.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from backend.audit import AUDIT_LOGGER
from backend.logging_config import JsonFormatter, TextFormatter
from backend.security import new_token
from tests.support import (
    AQPL,
    REPO_ROOT,
    aqpl_env,
    free_port,
    run_aqpl,
    stop_process,
    wait_for_http,
    wait_until,
)

PASSWORD = "a-long-secret-passphrase"
WRONG_PASSWORD = "not-the-passphrase-42"
FORGED = '{"event": "login.succeeded", "username": "admin"}'


@contextmanager
def serving(env: dict[str, str], stderr: Path) -> Iterator[str]:
    """`aqpl serve --no-worker` for the block, its stderr (and only that) in `stderr`; its base URL."""
    port = free_port()
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [*AQPL, "serve", "--no-worker", f"--port={port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/openapi.json")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(process)


def audit_events(lines: list[str], log_format: str) -> list[dict[str, str]]:
    """The audit events among the lines: their fields (text lines parsed from key=value)."""
    if log_format == "json":
        return [entry for entry in map(json.loads, lines) if entry["logger"] == AUDIT_LOGGER]
    events = []
    for line in lines:
        if f" {AUDIT_LOGGER}: " in line:
            events.append(dict(part.split("=", 1) for part in line.split(" ") if "=" in part))
    return events


@pytest.mark.slow
# Audit events are written at every log level; at `info` the access log (uvicorn's) is written too.
@pytest.mark.parametrize(("log_format", "log_level"), [("json", "info"), ("text", "warning")])
def test_the_api_logs_audit_events_without_secrets(tmp_path: Path, log_format: str, log_level: str) -> None:
    env = aqpl_env(tmp_path, log_format=log_format, log_level=log_level)
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    created = run_aqpl(
        ["users", "create", "lead7", "--role=lead", "--password-stdin"], env, input_text=PASSWORD
    )
    assert created.returncode == 0, created.stderr

    stderr = tmp_path / "serve.err"
    with serving(env, stderr) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        login = "/api/v1/auth/login"
        assert client.post(login, json={"username": "lead7", "password": WRONG_PASSWORD}).status_code == 401
        forged = client.post(login, json={"username": f"x\n{FORGED}", "password": WRONG_PASSWORD})
        assert forged.status_code == 401
        signed_in = client.post(login, json={"username": "lead7", "password": PASSWORD})
        assert signed_in.status_code == 200
        session_token = signed_in.json()["access_token"]
        bearer = {"Authorization": f"Bearer {session_token}"}
        made = client.post(
            "/api/v1/tokens", headers=bearer, json={"name": "ci", "scopes": ["checkpoints:read"]}
        )
        assert made.status_code == 201
        api_token, token_id = made.json()["token"], made.json()["id"]
        assert client.delete(f"/api/v1/tokens/{token_id}", headers=bearer).status_code == 204
        # A token that reaches a log line by mistake (here: a path the access log writes) is masked.
        stray = new_token()
        client.get(f"/api/v1/{stray}")

    text = stderr.read_text()
    cli_text = created.stderr
    for secret in (PASSWORD, WRONG_PASSWORD, session_token, api_token, stray):
        assert secret not in text and secret not in cli_text
    lines = text.splitlines()
    assert lines and all(line.strip() for line in lines)
    if log_format == "json":
        for line in [*lines, *cli_text.splitlines()]:
            json.loads(line)  # every line, uvicorn's included, is one JSON object
        assert "/api/v1/aqpl_[redacted]" in text  # the access log's line of the stray request
    assert not any(line.startswith(FORGED) for line in lines)  # a username cannot start a line

    events = audit_events(lines, log_format)
    kinds = [event["event"] for event in events]
    assert kinds == ["login.failed", "login.failed", "login.succeeded", "token.created", "token.revoked"]
    failed, forged_event, succeeded, token_created, token_revoked = events
    assert failed["username"] == "lead7" and failed["reason"] == "wrong_password"
    assert failed["address"] == "127.0.0.1"
    assert succeeded["username"] == "lead7"
    assert str(token_created["token_id"]) == str(token_id) and str(token_revoked["token_id"]) == str(token_id)
    if log_format == "json":
        assert forged_event["username"] == f"x\n{FORGED}"  # escaped in its line, whole in its field
        assert token_created["scopes"] == ["checkpoints:read"]
    assert [e["event"] for e in audit_events(cli_text.splitlines(), log_format)] == ["user.created"]


@pytest.mark.slow
def test_the_worker_logs_through_the_same_configuration(tmp_path: Path) -> None:
    env = aqpl_env(tmp_path, log_format="json")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    stderr = tmp_path / "worker.err"
    with stderr.open("wb") as err:
        worker = subprocess.Popen(
            [*AQPL, "worker", "--pool=solo"],
            env=env,
            stdout=subprocess.DEVNULL,  # Celery's start-up banner
            stderr=err,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: "ready" in stderr.read_text(), timeout=120, message="the worker to be ready")
        finally:
            stop_process(worker)
    entries = [json.loads(line) for line in stderr.read_text().splitlines()]
    assert any(entry["logger"].startswith("celery") and "ready" in entry["message"] for entry in entries)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(AUDIT_LOGGER, logging.INFO, __file__, 1, message, args or None, None)
    record.__dict__.update(extra)
    return record


def test_a_line_never_spans_two_lines_nor_shows_a_token() -> None:
    token = new_token()
    record = _record(
        "failed login for %s\n%s",
        "bob\r\nforged",
        token,
        event="login.failed",
        fields={"username": "eve\u202e\n", "scopes": ["a", "b"]},
    )
    text = TextFormatter().format(record)
    assert "\n" not in text and "\r" not in text and "\u202e" not in text
    assert token not in text and "aqpl_[redacted]" in text
    assert "event=login.failed" in text and 'scopes=["a", "b"]' in text
    line = JsonFormatter().format(record)
    assert "\n" not in line and token not in line
    entry = json.loads(line)
    assert entry["event"] == "login.failed" and entry["username"] == "eve\u202e\n"
    assert entry["time"].endswith("Z") and entry["level"] == "info"


def test_an_exception_is_one_field_of_its_json_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("aqpl", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "RuntimeError: boom" in json.loads(line)["exception"]
