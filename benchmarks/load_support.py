"""What the load benchmarks share: a seeded round served by `aqpl serve` on a scratch database, the
CPU bookkeeping, and the integrity checks read from the database after a run.

Used by `load_annotators.py` (a round worked to the end) and `load_overload.py` (a closed loop at
a fixed load, cell by cell).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import redis
from scratch_database import scratch_database
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend.auth.scopes import ANNOTATE
from backend.db import create_db_engine
from backend.models import (
    Annotation,
    ApiToken,
    Example,
    Project,
    ProjectStatus,
    Query,
    QuerySide,
    Role,
    Round,
    RoundState,
    SigmaSource,
    Split,
    User,
)
from backend.projects.config import ProjectConfig
from backend.security import hash_password, new_token, token_digest
from backend.settings import Settings
from backend.storage import write_images

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 1)


@dataclass(frozen=True)
class LoadConfig:
    """A run: what `seed` makes, how the server runs, and (load_annotators.py) how annotators behave."""

    annotators: int = 100
    queries: int = 1000
    overlap: int = 3  # answers per query (required_answers)
    train_examples: int = 1200
    lease_seconds: int = 10  # short, so abandoned leases come back within the run
    api_workers: int = 2  # uvicorn processes
    p_abandon: float = 0.05
    p_retry: float = 0.05
    p_drop: float = 0.05
    # Mean time an annotator looks at a task before answering, ms (uniform in [0.5, 1.5] x mean):
    # 3 s is a quick person on the σ-ladder; 0 makes a closed loop that measures saturation.
    think_ms: float = 3000.0
    max_seconds: float = 600.0  # the whole annotation phase
    max_requests_per_client: int = 3000
    seed: int = 0
    # Gold questions (docs/access-and-tasks.md): gold queries beside the round's, at this share of tasks.
    gold_queries: int = 0
    gold_rate: float = 0.0


@dataclass(frozen=True)
class Annotator:
    user_id: int
    token: str


@dataclass
class ClientLog:
    """What the simulated annotators were told, which the database must agree with after the run."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # answered, s
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    acknowledged: dict[tuple[int, str], int] = field(default_factory=dict)  # (user, key) -> annotation id
    replay_mismatches: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    transport_errors: int = 0


# ---------------------------------------------------------------- database


def seed(url: str, settings: Settings, config: LoadConfig) -> tuple[int, list[Annotator]]:
    """Project, examples, images, an annotating round with its queries, annotators and their tokens."""
    engine = create_db_engine(url)
    password_hash = hash_password(uuid.uuid4().hex)  # nobody logs in with a password here
    rng = np.random.default_rng(config.seed)
    try:
        with engine.begin() as connection:
            lead_id = connection.execute(
                insert(User).returning(User.id),
                [{"username": "load-lead", "password_hash": password_hash, "role": Role.lead}],
            ).scalar_one()
            project_id = connection.execute(
                insert(Project).returning(Project.id),
                [
                    {
                        "name": "load benchmark",
                        "owner_id": lead_id,
                        "status": ProjectStatus.ready,
                        "config": ProjectConfig.model_validate(
                            {
                                "dataset": {"format": "npz"},
                                "overlap": config.overlap,
                                "show_class_name": True,
                                "show_sigma_marker": False,
                                "auto_close": True,
                                "disagreement_threshold": None,
                                "gold_rate": config.gold_rate,
                            }
                        ),
                        "noise_seed": config.seed,
                        "image_shape": list(IMAGE_SHAPE),
                        "class_names": [str(digit) for digit in range(10)],
                        "num_train": config.train_examples,
                        "num_test": 0,
                    }
                ],
            ).scalar_one()
            example_ids: Sequence[int] = (
                connection.execute(
                    insert(Example).returning(Example.id, sort_by_parameter_order=True),
                    [
                        {
                            "project_id": project_id,
                            "dataset_index": index,
                            "split": Split.train,
                            "label": index % 10,
                            "sigma_index": 30,
                            "sigma_source": SigmaSource.initial,
                            "sigma_round": 0,
                        }
                        for index in range(config.train_examples)
                    ],
                )
                .scalars()
                .all()
            )
            round_id = connection.execute(
                insert(Round).returning(Round.id),
                [
                    {
                        "project_id": project_id,
                        "number": 1,
                        "state": RoundState.annotating,
                        "gold_rate": config.gold_rate if config.gold_queries else 0.0,
                    }
                ],
            ).scalar_one()
            picked = rng.choice(len(example_ids), size=config.queries + config.gold_queries, replace=False)
            chosen, gold = picked[: config.queries], picked[config.queries :]
            connection.execute(
                insert(Query),
                [
                    {
                        "round_id": round_id,
                        "example_id": example_ids[int(index)],
                        "side": QuerySide.excessive if rank % 2 == 0 else QuerySide.deficient,
                        "score": float(rank),
                        "required_answers": config.overlap,
                        "answer_count": 0,
                        "sigma_index_before": 30,
                        "status": "open",
                    }
                    for rank, index in enumerate(chosen)
                ],
            )
            if config.gold_queries:  # what a round opening with gold examples makes (backend/gold/)
                connection.execute(
                    insert(Query),
                    [
                        {
                            "round_id": round_id,
                            "example_id": example_ids[int(index)],
                            "side": QuerySide.gold,
                            "score": 0.0,
                            "required_answers": 0,
                            "answer_count": 0,
                            "sigma_index_before": 30,
                            "gold_sigma_index": int(rng.integers(10, 61)),
                            "status": "gold",
                        }
                        for index in gold
                    ],
                )
            user_ids = connection.execute(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [
                    {
                        "username": f"load-annotator-{i:03d}",
                        "password_hash": password_hash,
                        "role": Role.annotator,
                    }
                    for i in range(config.annotators)
                ],
            ).scalars()
            annotators = [Annotator(int(user_id), new_token()) for user_id in user_ids]
            connection.execute(
                insert(ApiToken),
                [
                    {
                        "user_id": annotator.user_id,
                        "name": "load",
                        "token_hash": token_digest(annotator.token),
                        "scopes": [ANNOTATE],
                    }
                    for annotator in annotators
                ],
            )
    finally:
        engine.dispose()
    # A live database has planner statistics; a bulk-loaded one has none until autovacuum comes by,
    # and without them tasks/next's candidate query is planned badly (about 10x slower).
    analyze = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with analyze.connect() as connection:
            connection.execute(text("ANALYZE"))
    finally:
        analyze.dispose()
    images = rng.integers(0, 256, (config.train_examples, *IMAGE_SHAPE), dtype=np.uint8)
    write_images(settings, project_id, images)
    return round_id, annotators


@dataclass(frozen=True)
class RoundRecord:
    """A round as the database holds it after a run."""

    state: RoundState | None
    queries: Sequence[tuple[int, int, int, str]]  # id, answer_count, required_answers, status (not gold)
    answers: Sequence[tuple[int, int, int, str]]  # annotation id, query id, annotator id, idempotency key

    def answers_per_query(self) -> Counter[int]:
        return Counter(query_id for _id, query_id, _user, _key in self.answers)


def read_round(engine: Engine, round_id: int) -> RoundRecord:
    with engine.connect() as connection:
        queries = connection.execute(
            select(Query.id, Query.answer_count, Query.required_answers, Query.status).where(
                Query.round_id == round_id, Query.status != "gold"
            )
        ).all()
        answers = connection.execute(
            select(Annotation.id, Annotation.query_id, Annotation.annotator_id, Annotation.idempotency_key)
            .join(Query, Query.id == Annotation.query_id)
            .where(Query.round_id == round_id)
        ).all()
        state = connection.scalar(select(Round.state).where(Round.id == round_id))
    return RoundRecord(
        state,
        [(int(q), int(n), int(r), str(s)) for q, n, r, s in queries],
        [(int(a), int(q), int(u), str(k)) for a, q, u, k in answers],
    )


def answer_problems(record: RoundRecord, log: ClientLog) -> list[str]:
    """The checks of every run: no (query, annotator) twice, every acknowledged submit stored under the
    id it was told, every replay answered alike, no 5xx but 503, no unexpected response."""
    problems: list[str] = []
    pairs = Counter((query_id, user) for _id, query_id, user, _key in record.answers)
    duplicates = [pair for pair, count in pairs.items() if count > 1]
    if duplicates:
        problems.append(f"{len(duplicates)} (query, annotator) pairs answered twice, e.g. {duplicates[:5]}")
    stored = {(user, key): annotation_id for annotation_id, _q, user, key in record.answers}
    lost = {ack: annotation for ack, annotation in log.acknowledged.items() if stored.get(ack) != annotation}
    if lost:
        problems.append(
            f"{len(lost)} acknowledged submits missing or changed in the database, "
            f"e.g. {list(lost.items())[:5]}"
        )
    if log.replay_mismatches:
        problems.append(
            f"{len(log.replay_mismatches)} replays answered differently: {log.replay_mismatches[:3]}"
        )
    server_errors = {
        kind: {s: c for s, c in counts.items() if s >= 500 and s != 503}
        for kind, counts in log.statuses.items()
    }
    if any(server_errors.values()):
        problems.append(f"5xx other than 503: {server_errors}")
    if log.unexpected:
        problems.append(f"{len(log.unexpected)} unexpected responses, e.g. {log.unexpected[:3]}")
    return problems


# ---------------------------------------------------------------- the server


def start_server(
    url: str,
    data_dir: Path,
    redis_url: str,
    queue: str,
    config: LoadConfig,
    port: int,
    repo: Path = REPO_ROOT,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`aqpl serve --no-worker` of the checkout at `repo` (this one, or another worktree)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AQPL_")}
    env.update(
        {
            "PYTHONPATH": str(repo),  # the checkout's own packages, not the installed ones
            "AQPL_DATA_DIR": str(data_dir),
            "AQPL_DATABASE_URL": url,
            "AQPL_BROKER_URL": redis_url,
            "AQPL_QUEUE": queue,
            "AQPL_LEASE_SECONDS": str(config.lease_seconds),
            "AQPL_LOG_LEVEL": "warning",  # no access log: it would cost CPU the API needs
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    log = (data_dir / "serve.log").open("wb")
    # The command line lives in cli/ since it left aqpl/; an older checkout (--repo) still has it there.
    command_line = "cli" if (repo / "cli" / "__main__.py").exists() else "aqpl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            command_line,
            "serve",
            "--no-worker",
            f"--workers={config.api_workers}",
            f"--port={port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=repo,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {(data_dir / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(process)
    raise RuntimeError("the server did not answer /api/v1/health within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def cpu_seconds(server_group: int) -> dict[str, float]:
    """CPU time (user + system, s) so far of the API processes, of PostgreSQL's, and of this client."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"api": 0.0, "postgres": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        command = text_[text_.index("(") + 1 : text_.rindex(")")]
        fields = text_[text_.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        if int(fields[2]) == server_group:  # process group
            totals["api"] += used
        elif command == "postgres":
            totals["postgres"] += used
    own = os.times()
    totals["client"] = own.user + own.system
    # The whole machine (first line of /proc/stat: user nice system idle iowait irq softirq steal ...).
    machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    totals["machine"] = (sum(machine[:8]) - machine[3] - machine[4]) / ticks
    return totals


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1000) if values else float("nan")


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Core-seconds between two `cpu_seconds` readings, and "others": the rest of the machine's."""
    used = {name: after[name] - before[name] for name in after}
    used["others"] = used["machine"] - used["api"] - used["postgres"] - used["client"]
    return used


def this_machine() -> str:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"machine: {platform.node()}, {os.cpu_count()} CPUs, {python}"


# ---------------------------------------------------------------- one run


@dataclass(frozen=True)
class ServedRound:
    """A seeded annotating round behind a running `aqpl serve`, on a database of its own."""

    url: str
    data_dir: Path
    engine: Engine
    round_id: int
    annotators: list[Annotator]
    process: subprocess.Popen[bytes]
    port: int

    def server_traceback(self) -> str | None:
        """The problem to report when the server logged a traceback (the log's end), else None."""
        log = (self.data_dir / "serve.log").read_text(errors="replace")
        return f"the server logged a traceback:\n{log[-3000:]}" if "Traceback" in log else None


@contextmanager
def served_round(
    config: LoadConfig,
    *,
    server_url: str,
    redis_url: str,
    repo: Path,
    prefix: str,
    connect: Callable[[str], Engine],
    keep: bool = False,
    server_env: dict[str, str] | None = None,
    verbose: bool = False,
) -> Iterator[ServedRound]:
    """A database `<prefix>_<random>` on `server_url`, migrated by the checkout at `repo` and seeded
    (`seed`), served by that checkout on a free port with a Redis queue of its own on `redis_url`;
    `connect(url)` makes the engine the caller reads with. On exit the server is stopped, the queue's
    keys deleted and the database dropped (unless `keep`)."""
    queue = f"{prefix}_{uuid.uuid4().hex[:8]}"
    repo = repo.resolve()
    with (
        scratch_database(server_url, prefix, keep=keep, repo=repo) as url,
        tempfile.TemporaryDirectory(prefix=f"{prefix.replace('_', '-')}-") as tmp,
    ):
        if verbose:
            print(f"database {make_url(url).database}; seeding...", flush=True)
        data_dir = Path(tmp)
        engine = connect(url)
        process = None
        try:
            round_id, annotators = seed(url, Settings(data_dir=data_dir, database_url=url), config)
            port = free_port()
            process = start_server(url, data_dir, redis_url, queue, config, port, repo, server_env)
            yield ServedRound(url, data_dir, engine, round_id, annotators, process, port)
        finally:
            if process is not None:
                stop_server(process)
            engine.dispose()
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(match=f"*{queue}*"):
                client.delete(key)
            client.close()


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--server-url, --redis-url and --repo: what `served_round` reads from the command line."""
    parser.add_argument(
        "--server-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server (a database is created and dropped on it for each run)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO_ROOT,
        help="serve (and migrate) this checkout instead, e.g. a `git worktree add /tmp/aqpl-old <commit>`",
    )
