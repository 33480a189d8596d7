"""Stopping `aqpl serve` stops the worker it started, whichever way it stops (issue 13, item 12).

Before the fix, SIGTERM (systemd, `docker stop`, `kill`) left the embedded worker running as an
orphan until its job ended: uvicorn raised the signal again after its graceful shutdown, with the
default handler back, and the process died before its `finally` could stop the worker. Real
processes here: `aqpl serve` with its worker (ready to take jobs), a signal, and the worker's pid
watched in /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.embedded_worker import EmbeddedWorker
from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http, wait_until

WORKER_READY_SECONDS = 240.0  # the worker imports torch: slow on a busy 2-core machine
SERVE_STOP_SECONDS = 60.0  # uvicorn's graceful shutdown, then the idle worker's warm shutdown
CRASH_SECONDS = 10.0  # the kernel's PR_SET_PDEATHSIG kill is immediate


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name, in parentheses, may hold spaces


def children_of(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid
    ]


def gone(pid: int) -> bool:
    """No such process, or only its zombie (a process that exited; nobody has reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextmanager
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`aqpl serve` answering, with its worker ready for jobs: (the serve process, the worker's pid)."""
    env = aqpl_env(tmp_path, log_level="warning")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    port = free_port()
    log = tmp_path / "serve.log"
    worker = 0
    with aqpl_process(["serve", f"--port={port}"], env, log) as process:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", timeout=90)
            wait_until(lambda: bool(children_of(process.pid)), timeout=30, message="the worker process")
            (worker,) = children_of(process.pid)
            # A job through the broker and back: the worker is up and taking jobs.
            ping = run_aqpl(["system", "ping", f"--timeout={WORKER_READY_SECONDS:g}"], env, timeout=300)
            assert ping.returncode == 0, ping.stderr + log.read_text(errors="replace")[-3000:]
            yield process, worker
        finally:
            if worker and not gone(worker):  # the test failed: leave no worker behind
                os.kill(worker, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_to_serve_stops_its_worker(tmp_path: Path, signum: signal.Signals) -> None:
    with serving(tmp_path) as (process, worker):
        process.send_signal(signum)
        process.wait(timeout=SERVE_STOP_SECONDS)
        assert gone(worker), f"worker {worker} outlived aqpl serve (parent now {parent_of(worker)})"
        # It ends by the signal, as it would without a worker: what systemd and shells expect.
        assert process.returncode == -signum
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_a_crashed_serve_takes_its_worker_with_it(tmp_path: Path) -> None:
    with serving(tmp_path) as (process, worker):
        process.kill()  # SIGKILL: no handler, no finally runs
        process.wait(timeout=10)
        wait_until(lambda: gone(worker), timeout=CRASH_SECONDS, message=f"worker {worker} to die")


IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_worker_that_does_not_stop_is_killed_after_the_warm_shutdown_bound(tmp_path: Path) -> None:
    worker = EmbeddedWorker([sys.executable, "-c", IGNORES_SIGTERM], stop_seconds=1.0)
    worker.start()
    process = worker.process
    assert process is not None and process.stdout is None
    try:
        time.sleep(1.5)  # the child has started and ignores SIGTERM by now
        started = time.monotonic()
        worker.stop()
        took = time.monotonic() - started
        assert process.returncode == -signal.SIGKILL
        assert 1.0 <= took < 5.0, took
    finally:
        worker.kill()


def test_the_worker_runs_in_its_own_process_group() -> None:
    """A Ctrl-C at the terminal (SIGINT to the foreground group) reaches `aqpl serve` alone."""
    worker = EmbeddedWorker([sys.executable, "-c", "import time; time.sleep(30)"], stop_seconds=5.0)
    worker.start()
    assert worker.process is not None
    try:
        assert os.getpgid(worker.process.pid) == worker.process.pid != os.getpgid(0)
    finally:
        worker.stop()
    assert worker.process.returncode == -signal.SIGTERM
