"""The worker `aqpl serve` runs beside the API, stopped whichever way `aqpl serve` stops.

- SIGTERM, SIGINT (Ctrl-C), SIGHUP: the API shuts down gracefully first (uvicorn), then the worker
  gets SIGTERM, Celery's warm shutdown (it finishes its job, or hands it back), and at most
  `WORKER_STOP_SECONDS`, then SIGKILL. `aqpl serve` then ends by the signal it got, as it would have
  without a worker. A second SIGTERM or SIGINT while the worker stops kills it at once.
- The API process failing (an exception) unwinds through the same stop. Killed outright (SIGKILL, the
  OOM killer), it runs no code at all: the worker asked the kernel to kill it when its parent dies
  (PR_SET_PDEATHSIG, Linux), so it cannot outlive `aqpl serve` as an orphan.
- In either case an unacknowledged job is delivered again at the next start (acks_late), as after
  any lost worker.

The worker runs in a process group of its own, so a Ctrl-C at the terminal reaches `aqpl serve`
alone, which stops the worker once and in order (rather than both at once, each on its own).

Why not a plain try/finally around uvicorn: uvicorn catches SIGTERM and SIGINT for its graceful
shutdown, then puts the previous handlers back and raises the signal again. With Python's default
SIGTERM handler that killed the process before any `finally` ran, and the worker was orphaned.
Here the previous handler is ours: it unwinds to the worker's stop. uvicorn does not catch SIGHUP,
so ours hands it to uvicorn as a SIGTERM (a graceful shutdown) and remembers it. With several API
processes (`--workers N`), uvicorn's supervisor keeps its own handlers until it returns: SIGTERM and
SIGINT stop it, and SIGHUP restarts the API processes (uvicorn's meaning), the worker running on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# Seconds of warm shutdown before the worker is killed: a job that needs longer is delivered again
# at the next start. Below systemd's default stop timeout (90 s), so the kill is ours, not systemd's.
WORKER_STOP_SECONDS = 25.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class _Stopped(BaseException):
    """A stop signal: unwinds the API's call to the worker's stop (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """The child's step between fork and exec that has the kernel SIGKILL it when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it

    def before_exec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody would signal us now
            os._exit(1)

    return before_exec


class EmbeddedWorker:
    """A worker process started by this one: stopped by `stop`, and killed by the kernel if we die."""

    def __init__(self, command: list[str], *, stop_seconds: float = WORKER_STOP_SECONDS) -> None:
        self.command = command
        self.stop_seconds = stop_seconds
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No thread runs yet in `aqpl serve` when it starts the worker: preexec_fn is safe here.
        self.process = subprocess.Popen(
            self.command, process_group=0, preexec_fn=_die_with_parent(os.getpid())
        )

    def stop(self) -> None:
        """SIGTERM (warm shutdown), up to `stop_seconds` to finish, then SIGKILL; returns once it is gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()


@contextmanager
def worker_beside(worker: EmbeddedWorker | None) -> Iterator[None]:
    """Run the block (the API) with `worker` started beside it; however the block ends, stop the worker.
    After a stop signal, this process then ends by that signal."""
    if worker is None:
        yield
        return
    received: list[int] = []  # the first stop signal
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stopping:
            if signum != signal.SIGHUP:
                worker.kill()  # asked again: no more waiting
            return
        if not received:
            received.append(signum)
        if signum == signal.SIGHUP:
            # Shut the API down gracefully: uvicorn catches SIGTERM (and raises it again for us after).
            signal.raise_signal(signal.SIGTERM)
            return
        raise _Stopped(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        worker.start()
        yield
    except _Stopped:
        pass
    finally:
        stopping = True
        for signum in STOP_SIGNALS:  # uvicorn's supervisor (--workers N) may have replaced ours
            signal.signal(signum, on_signal)
        try:
            worker.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if received:
        _end_by(received[0])


def _end_by(signum: int) -> None:
    """End this process by `signum`'s default action (the status a supervisor expects), output flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
