"""Many annotators at once: 100 simulated annotators work through a round against PostgreSQL + Redis
with the API under uvicorn (2 processes), with abandoned leases, retried submits and dropped connections.

Makes a fresh PostgreSQL database (dropped at the end) and seeds it directly: one ready project of
N training examples (8x8 images in images.npy), a round in `annotating` with Q queries needing K
answers each (overlap K), and A annotators with API tokens (annotate scope). Starts
`aqpl serve --no-worker --workers 2` with a short lease (AQPL_LEASE_SECONDS) and a Redis broker.
Then A asyncio clients (one httpx.AsyncClient each) loop: POST /tasks/next, think, POST the answer
with an Idempotency-Key. Each task, a client may

  abandon it   (p_abandon): never answers; goes away for a lease period, so the lease must expire
               and the query return to the pool,
  retry        (p_retry):   sends the same submit again with the same key, expecting the same answer,
  drop         (p_drop):    cancels the submit mid-request, closes its connection, and retries
               with the same key on a new one (the first attempt may or may not have landed).

Clients stop once they get 204 and the database says every query is complete (or at the time
and request caps). Then it checks, from the database: every query has exactly K answers and is
complete, no (query, annotator) twice, every submit that got a 2xx is stored with the id it was
told, every replay returned the first answer, and no response was a 5xx. It prints p50 / p99 of
tasks/next and of submit (client-side, over keep-alive HTTP on localhost), throughput and wall time.

    .venv/bin/python benchmarks/load_annotators.py                 # 100 annotators, 1,000 queries x 3
    .venv/bin/python benchmarks/load_annotators.py --think-ms 0    # closed loop: saturation throughput
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import platform
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from scratch_database import scratch_database
from sqlalchemy import Engine, create_engine, func, insert, select, text
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
from backend.security import hash_password, new_token, token_digest
from backend.settings import Settings
from backend.storage import write_images

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (8, 8, 1)
NEXT, SUBMIT = "tasks/next", "submit"
EMPTY_POLL_SECONDS = 5.0  # after a 204 the annotation page asks again in 5 s (frontend/static/js/annotate.js)


@dataclass(frozen=True)
class LoadConfig:
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


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # seconds
    # Time inside the app (its Server-Timing header): the latency without HTTP parsing, socket
    # queues and this client's own event loop.
    app_latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # seconds
    started_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # perf_counter
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    acknowledged: dict[tuple[int, str], int] = field(default_factory=dict)  # (user, key) -> annotation id
    replay_mismatches: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    abandoned: int = 0
    refused: int = 0  # 503 + Retry-After (admission control): waited out and sent again, as the page does
    retried: int = 0
    dropped: int = 0
    transport_errors: int = 0


@dataclass(frozen=True)
class Annotator:
    user_id: int
    token: str


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
                        "config": {
                            "dataset": {"format": "npz"},
                            "overlap": config.overlap,
                            "show_class_name": True,
                            "show_sigma_marker": False,
                            "auto_close": True,
                            "disagreement_threshold": None,
                        },
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
                [{"project_id": project_id, "number": 1, "state": RoundState.annotating}],
            ).scalar_one()
            chosen = rng.choice(len(example_ids), size=config.queries, replace=False)
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


def open_queries(engine: Engine, round_id: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count(Query.id)).where(Query.round_id == round_id, Query.status != "complete")
            )
            or 0
        )


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
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aqpl",
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


# ---------------------------------------------------------------- the annotators


class Simulation:
    def __init__(self, base_url: str, config: LoadConfig, engine: Engine, round_id: int) -> None:
        self.base_url = base_url
        self.config = config
        self.engine = engine
        self.round_id = round_id
        self.stats = Stats()
        self.complete = asyncio.Event()
        self.deadline = 0.0
        # httpx builds a TLS context per client by default: ~20 ms of CPU that blocks this event
        # loop (and inflates every latency in flight) each time an annotator opens a connection.
        self.tls = ssl.create_default_context()

    def client(self, annotator: Annotator) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {annotator.token}"},
            timeout=30,
            limits=httpx.Limits(max_connections=1),  # one browser tab: one connection
            verify=self.tls,
        )

    async def timed(self, client: httpx.AsyncClient, kind: str, url: str, **kwargs: Any) -> httpx.Response:
        """POST and record; a 503 with Retry-After (the server's admission control) is waited out and
        the same request sent again, as the annotation page does."""
        while True:
            response = await self._timed_once(client, kind, url, **kwargs)
            retry_after = response.headers.get("retry-after")
            if response.status_code != 503 or retry_after is None:
                return response
            self.stats.refused += 1
            await asyncio.sleep(float(retry_after) * random.uniform(0.5, 1.5))

    async def _timed_once(
        self, client: httpx.AsyncClient, kind: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await client.post(url, **kwargs)
        self.stats.latencies[kind].append(time.perf_counter() - started)
        timing = response.headers.get("server-timing", "")
        if timing.startswith("app;dur="):
            self.stats.app_latencies[kind].append(float(timing.removeprefix("app;dur=")) / 1000)
        self.stats.started_at[kind].append(started)
        self.stats.statuses[kind][response.status_code] += 1
        return response

    async def submit_until_answered(
        self, annotator: Annotator, client: httpx.AsyncClient, task_id: int, sigma: int, key: str
    ) -> tuple[httpx.AsyncClient, dict[str, Any] | None]:
        """Submit, riding out transport errors with the same key; (client in use, answer or None)."""
        body = {"sigma_index": sigma, "seconds": 1.0}
        headers = {"Idempotency-Key": key}
        for _attempt in range(5):
            try:
                response = await self.timed(
                    client, SUBMIT, f"/api/v1/tasks/{task_id}/annotation", json=body, headers=headers
                )
            except httpx.TransportError:
                self.stats.transport_errors += 1
                await client.aclose()
                client = self.client(annotator)
                continue
            if response.status_code == 201:
                answer: dict[str, Any] = response.json()
                self.stats.acknowledged[(annotator.user_id, key)] = int(answer["id"])
                return client, answer
            if response.status_code != 409:  # 409: the lease lapsed and the slot was taken (allowed)
                self.stats.unexpected.append(f"submit {response.status_code}: {response.text[:200]}")
            return client, None
        self.stats.unexpected.append(f"submit of task {task_id} failed 5 times on transport errors")
        return client, None

    async def drop_mid_request(
        self, client: httpx.AsyncClient, task_id: int, sigma: int, key: str, rng: random.Random
    ) -> None:
        """Start the submit, then cancel it and close the connection (as a closed tab or a timeout does)."""
        request = asyncio.ensure_future(
            client.post(
                f"/api/v1/tasks/{task_id}/annotation",
                json={"sigma_index": sigma, "seconds": 1.0},
                headers={"Idempotency-Key": key},
            )
        )
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.TransportError):
            await request
        await client.aclose()
        self.stats.dropped += 1

    async def annotate(self, annotator: Annotator) -> None:
        rng = random.Random(f"{self.config.seed}-{annotator.user_id}")
        # People sit down over a few seconds, not all in the same millisecond.
        await asyncio.sleep(rng.uniform(0.0, max(self.config.think_ms / 1000, 1.0)))
        client = self.client(annotator)
        requests = 0
        try:
            while requests < self.config.max_requests_per_client and time.monotonic() < self.deadline:
                requests += 1
                try:
                    response = await self.timed(client, NEXT, "/api/v1/tasks/next")
                except httpx.TransportError:
                    self.stats.transport_errors += 1
                    await client.aclose()
                    client = self.client(annotator)
                    continue
                if response.status_code == 204:
                    if self.complete.is_set():
                        return
                    # Nothing for me now; abandoned leases may come back once they expire.
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * EMPTY_POLL_SECONDS)
                    continue
                if response.status_code != 200:
                    self.stats.unexpected.append(f"next {response.status_code}: {response.text[:200]}")
                    await asyncio.sleep(1.0)
                    continue
                task = response.json()
                task_id = int(task["id"])
                if self.config.think_ms > 0:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * self.config.think_ms / 1000)
                roll = rng.random()
                if roll < self.config.p_abandon:
                    # The tab is closed without answering: back after the lease has lapsed.
                    self.stats.abandoned += 1
                    await client.aclose()
                    await asyncio.sleep(self.config.lease_seconds + rng.uniform(0.5, 2.0))
                    client = self.client(annotator)
                    continue
                sigma = rng.randrange(0, 91)
                key = str(uuid.uuid4())
                if roll < self.config.p_abandon + self.config.p_drop:
                    await self.drop_mid_request(client, task_id, sigma, key, rng)
                    client = self.client(annotator)
                client, answer = await self.submit_until_answered(annotator, client, task_id, sigma, key)
                if answer is not None and roll > 1 - self.config.p_retry:
                    self.stats.retried += 1
                    client, replay = await self.submit_until_answered(annotator, client, task_id, sigma, key)
                    if replay != answer:
                        self.stats.replay_mismatches.append(f"{answer} then {replay}")
        finally:
            await client.aclose()

    async def watch(self) -> None:
        """Set `complete` once the database has no open query left."""
        while time.monotonic() < self.deadline:
            if await asyncio.to_thread(open_queries, self.engine, self.round_id) == 0:
                self.complete.set()
                return
            await asyncio.sleep(1.0)

    async def run(self, annotators: list[Annotator]) -> float:
        self.deadline = time.monotonic() + self.config.max_seconds
        started = time.perf_counter()
        watcher = asyncio.ensure_future(self.watch())
        await asyncio.gather(*(self.annotate(annotator) for annotator in annotators))
        watcher.cancel()
        return time.perf_counter() - started


# ---------------------------------------------------------------- checks and report


def verify(engine: Engine, round_id: int, config: LoadConfig, stats: Stats) -> list[str]:
    """Every invariant the run must keep; returns the violations (empty when all hold)."""
    problems: list[str] = []
    with engine.connect() as connection:
        queries = connection.execute(
            select(Query.id, Query.answer_count, Query.status).where(Query.round_id == round_id)
        ).all()
        rows = connection.execute(
            select(Annotation.id, Annotation.query_id, Annotation.annotator_id, Annotation.idempotency_key)
            .join(Query, Query.id == Annotation.query_id)
            .where(Query.round_id == round_id)
        ).all()
        state = connection.scalar(select(Round.state).where(Round.id == round_id))
    per_query = Counter(query_id for _id, query_id, _user, _key in rows)
    wrong = [
        (q, n, s, per_query[q])
        for q, n, s in queries
        if not (n == per_query[q] == config.overlap and s == "complete")
    ]
    if len(queries) != config.queries:
        problems.append(f"{len(queries)} queries in the round, expected {config.queries}")
    if wrong:
        problems.append(f"{len(wrong)} queries without exactly {config.overlap} answers, e.g. {wrong[:5]}")
    pairs = Counter((query_id, user) for _id, query_id, user, _key in rows)
    duplicates = [pair for pair, count in pairs.items() if count > 1]
    if duplicates:
        problems.append(f"{len(duplicates)} (query, annotator) pairs answered twice, e.g. {duplicates[:5]}")
    stored = {(int(user), str(key)): int(annotation_id) for annotation_id, _q, user, key in rows}
    lost = {
        ack: annotation for ack, annotation in stats.acknowledged.items() if stored.get(ack) != annotation
    }
    if lost:
        problems.append(
            f"{len(lost)} acknowledged submits missing or changed in the database, "
            f"e.g. {list(lost.items())[:5]}"
        )
    if stats.replay_mismatches:
        problems.append(
            f"{len(stats.replay_mismatches)} replays answered differently: {stats.replay_mismatches[:3]}"
        )
    server_errors = {
        kind: {s: c for s, c in counts.items() if s >= 500 and s != 503}
        for kind, counts in stats.statuses.items()
    }
    if stats.refused:
        print(f"note: {stats.refused} requests refused with 503 + Retry-After and sent again")
    if any(server_errors.values()):
        problems.append(f"5xx responses: {server_errors}")
    if stats.unexpected:
        problems.append(f"{len(stats.unexpected)} unexpected responses, e.g. {stats.unexpected[:3]}")
    if state != RoundState.aggregating:
        problems.append(f"the round is {state}, expected aggregating (auto-closed by the last answer)")
    return problems


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1000) if values else float("nan")


def report(
    config: LoadConfig,
    stats: Stats,
    wall: float,
    answers: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {python}")
    before = " ".join(f"{value:.2f}" for value in load_before)
    after = " ".join(f"{value:.2f}" for value in load_after)
    print(f"load average (1, 5, 15 min) before: {before}; after: {after}")
    print(
        f"config: {config.annotators} annotators, {config.queries} queries x {config.overlap} answers, "
        f"{config.api_workers} API processes, lease {config.lease_seconds} s, think {config.think_ms:g} ms, "
        f"abandon/retry/drop {config.p_abandon:.0%}/{config.p_retry:.0%}/{config.p_drop:.0%}"
    )
    print(
        f"events: {stats.abandoned} abandoned leases, {stats.retried} retried submits, "
        f"{stats.dropped} dropped connections, {stats.transport_errors} transport errors"
    )
    for kind in (NEXT, SUBMIT):
        values = stats.latencies[kind]
        statuses = dict(sorted(stats.statuses[kind].items()))
        print(
            f"{kind:>10}: {len(values):6d} requests  p50 {percentile_ms(values, 50):7.1f} ms  "
            f"p99 {percentile_ms(values, 99):7.1f} ms  max {percentile_ms(values, 100):7.1f} ms  "
            f"statuses {statuses}"
        )
        inside = stats.app_latencies[kind]
        print(
            f"{'in the app':>10}: {len(inside):6d} requests  p50 {percentile_ms(inside, 50):7.1f} ms  "
            f"p99 {percentile_ms(inside, 99):7.1f} ms  max {percentile_ms(inside, 100):7.1f} ms  "
            "(Server-Timing)"
        )
    print(f"answers stored: {answers} in {wall:.1f} s wall = {answers / wall:.1f} answers/s")
    for kind in (NEXT, SUBMIT):
        times = np.asarray(stats.started_at[kind])
        if not len(times):
            continue
        milliseconds = np.asarray(stats.latencies[kind]) * 1000
        edges = np.linspace(times.min(), times.max() + 1e-9, 11)
        windows = [milliseconds[(times >= low) & (times < high)] for low, high in itertools.pairwise(edges)]
        slices = " ".join(f"{np.percentile(window, 99):.0f}" if len(window) else "-" for window in windows)
        print(f"{kind:>10}: p99 (ms) in each tenth of the run: {slices}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = LoadConfig()
    parser.add_argument(
        "--server-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server (a database is created and dropped on it)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--annotators", type=int, default=defaults.annotators)
    parser.add_argument("--queries", type=int, default=defaults.queries)
    parser.add_argument("--overlap", type=int, default=defaults.overlap)
    parser.add_argument("--train-examples", type=int, default=defaults.train_examples)
    parser.add_argument("--lease-seconds", type=int, default=defaults.lease_seconds)
    parser.add_argument("--api-workers", type=int, default=defaults.api_workers)
    parser.add_argument("--think-ms", type=float, default=defaults.think_ms)
    parser.add_argument("--abandon", type=float, default=defaults.p_abandon, help="probability per task")
    parser.add_argument("--retry", type=float, default=defaults.p_retry, help="probability per task")
    parser.add_argument("--drop", type=float, default=defaults.p_drop, help="probability per task")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--keep-database", action="store_true", help="do not drop the database (to EXPLAIN queries)"
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO_ROOT,
        help="serve (and migrate) this checkout instead, e.g. a `git worktree add /tmp/aqpl-old <commit>`",
    )
    args = parser.parse_args()
    config = LoadConfig(
        annotators=args.annotators,
        queries=args.queries,
        overlap=args.overlap,
        train_examples=max(args.train_examples, args.queries),
        lease_seconds=args.lease_seconds,
        api_workers=args.api_workers,
        think_ms=args.think_ms,
        p_abandon=args.abandon,
        p_retry=args.retry,
        p_drop=args.drop,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    queue = f"aqpl_load_{uuid.uuid4().hex[:8]}"
    problems: list[str] = []
    with (
        scratch_database(
            args.server_url, "aqpl_load", keep=args.keep_database, repo=args.repo.resolve()
        ) as url,
        tempfile.TemporaryDirectory(prefix="aqpl-load-") as tmp,
    ):
        print(f"database {make_url(url).database}; seeding...", flush=True)
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir, database_url=url)
        engine = create_db_engine(url)
        process = None
        try:
            round_id, annotators = seed(url, settings, config)
            port = free_port()
            process = start_server(url, data_dir, args.redis_url, queue, config, port, args.repo.resolve())
            print(f"server up on port {port}; {config.annotators} annotators start", flush=True)
            load_before = os.getloadavg()
            cpu_before = cpu_seconds(process.pid)
            simulation = Simulation(f"http://127.0.0.1:{port}", config, engine, round_id)
            # The clients' own full garbage collections paused this event loop for up to ~150 ms,
            # charged to every request in flight: measure the server, not the instrument.
            gc.freeze()
            gc.disable()
            try:
                wall = asyncio.run(simulation.run(annotators))
            finally:
                gc.enable()
            cpu_after = cpu_seconds(process.pid)
            load_after = os.getloadavg()
            problems = verify(engine, round_id, config, simulation.stats)
            with engine.connect() as connection:
                answers = int(connection.scalar(select(func.count(Annotation.id))) or 0)
            report(config, simulation.stats, wall, answers, load_before, load_after)
            requests = sum(len(values) for values in simulation.stats.latencies.values())
            used = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
            others = used["machine"] - used["api"] - used["postgres"] - used["client"]
            print(
                f"CPU used (core-seconds): API {used['api']:.1f}, PostgreSQL {used['postgres']:.1f}, "
                f"client {used['client']:.1f}, other processes on the machine {others:.1f}, "
                f"of {wall * (os.cpu_count() or 1):.1f} available"
            )
            print(
                f"CPU per request: API {1000 * used['api'] / max(requests, 1):.1f} ms, PostgreSQL "
                f"{1000 * used['postgres'] / max(requests, 1):.1f} ms ({requests} requests)"
            )
            log = (data_dir / "serve.log").read_text(errors="replace")
            if "Traceback" in log:
                problems.append(f"the server logged a traceback:\n{log[-3000:]}")
        finally:
            if process is not None:
                stop_server(process)
            engine.dispose()
            client = redis.Redis.from_url(args.redis_url)
            for key in client.scan_iter(match=f"*{queue}*"):
                client.delete(key)
            client.close()
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: every query has exactly its answers, no duplicates, no lost submits, no 5xx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
