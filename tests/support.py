"""Helpers for tests that run real processes: free ports, environments, waiting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
AQPL = [sys.executable, "-m", "cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aqpl_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of an `aqpl` subprocess: only the given AQPL_ settings, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQPL_")}
    env["AQPL_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"AQPL_{key.upper()}": value for key, value in settings.items()})
    return env


def run_aqpl(
    args: list[str], env: dict[str, str], *, input_text: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AQPL, *args],
        env=env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


@contextmanager
def aqpl_process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `aqpl ARGS` in the background for the block; its output goes to `log_path`."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*AQPL, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=timeout)


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.2, message: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")


def wait_for_http(url: str, *, timeout: float = 60) -> None:
    def answers() -> bool:
        try:
            httpx.get(url, timeout=2)
        except httpx.TransportError:
            return False
        return True

    wait_until(answers, timeout=timeout, message=url)
