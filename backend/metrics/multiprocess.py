"""prometheus-client's multiprocess mode: every API process of `aqpl serve` counts into one folder.

Each process writes its counters to memory-mapped files named after its pid under
PROMETHEUS_MULTIPROC_DIR; a scrape, answered by any one process, adds up the files of all of
them, so the sum is the same whichever process answers and a counter never goes backwards (the
files of a process that exited stay and keep counting in the sum). prometheus-client chooses the
mode when it is imported, from that environment variable: `aqpl serve` sets it before any API
process starts, and clears the folder, since a new serve starts its counters from zero.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from backend.settings import Settings

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's, read at its import
# Files of the gauges that count live processes only (`multiprocess_mode="livesum"`, ...).
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "metrics"


def prepare_metrics_dir(settings: Settings) -> Path:
    """Empty the metrics folder and point prometheus-client at it (call before the API processes start)."""
    folder = metrics_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[ENVIRONMENT_VARIABLE] = str(folder)
    return folder


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, or None when this process counts on its own (tests, plain uvicorn)."""
    folder = os.environ.get(ENVIRONMENT_VARIABLE)
    return Path(folder) if folder else None


def mark_dead_processes(folder: Path) -> list[int]:
    """`mark_process_dead` for every process whose live gauges are in `folder` but which has exited.

    A process that ends cleanly marks itself (the app's shutdown); one that crashed or was killed
    cannot, and its in-flight requests would stay in the gauge: this drops them at the next scrape.
    """
    from prometheus_client import multiprocess

    dead = sorted(
        {
            int(match.group(1))
            for path in folder.glob("gauge_live*.db")
            if (match := _LIVE_GAUGE_FILE.fullmatch(path.name)) and not _alive(int(match.group(1)))
        }
    )
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True
