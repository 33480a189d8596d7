"""Latency of GET /projects/{id} and POST /tasks/next on a 10,000-example project, through a real server.

Seeds a fresh database with one ready project of N training examples (plus N/5 test), a round
in `annotating` with Q queries (overlap 2) and A annotators, starts `aqpl serve --no-worker`
(uvicorn, one process) on it and times, over HTTP with keep-alive:

  GET  /api/v1/projects/{id}    the lead's dashboard read: σ counts and histogram over N rows,
                                current round with its counts, latest checkpoint
  POST /api/v1/tasks/next       a new lease each time (every task is answered before the next
                                call, the answer is not timed); sequential, then C annotators
                                in parallel

and prints p50 / p99 / mean, then writes them to docs/benchmarks.md (its own section only).

    .venv/bin/python benchmarks/bench_project_api.py                                  # SQLite
    .venv/bin/python benchmarks/bench_project_api.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from scratch_database import scratch_database
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from backend.auth.service import create_login_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.migrate import upgrade_database
from backend.models import (
    Checkpoint,
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
from backend.security import hash_password

REPO_ROOT = Path(__file__).resolve().parents[1]

SECTION_START = "<!-- bench_project_api:start -->"
SECTION_END = "<!-- bench_project_api:end -->"


def seed(database_url: str, examples: int, queries: int, annotators: int) -> tuple[int, str, list[str]]:
    """The project, a lead token and annotator tokens, written in bulk."""
    engine = create_db_engine(database_url)
    password_hash = hash_password(uuid.uuid4().hex)  # nobody logs in with a password here
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = User(username="bench-lead", password_hash=password_hash, role=Role.lead)
            people = [
                User(username=f"bench-annotator-{i}", password_hash=password_hash, role=Role.annotator)
                for i in range(annotators)
            ]
            session.add_all([lead, *people])
            session.flush()
            project = Project(
                name="benchmark",
                owner_id=lead.id,
                status=ProjectStatus.ready,
                config=ProjectConfig.model_validate(
                    {"dataset": {"format": "npz"}, "overlap": 2, "show_class_name": True}
                ),
                image_shape=[28, 28, 1],
                class_names=[str(k) for k in range(10)],
                num_train=examples,
                num_test=examples // 5,
            )
            session.add(project)
            session.flush()
            rows = [
                {
                    "project_id": project.id,
                    "dataset_index": index,
                    "split": split,
                    "label": index % 10,
                    # A spread of σ over the ladder, some already queried, so the histogram has work to do.
                    "sigma_index": (index * 7) % 91,
                    "sigma_source": SigmaSource.queried if index % 50 == 0 else SigmaSource.initial,
                    "sigma_round": 0,
                }
                for split, count in ((Split.train, examples), (Split.test, examples // 5))
                for index in range(count)
            ]
            for start in range(0, len(rows), 5000):
                session.execute(insert(Example), rows[start : start + 5000])
            session.add(
                Checkpoint(
                    project_id=project.id,
                    round_number=0,
                    file="projects/x/checkpoints/round_000.safetensors",
                    sha256="0" * 64,
                    size_bytes=1,
                    meta={},
                    metrics={"clean": 0.9},
                )
            )
            round_ = Round(
                project_id=project.id, number=1, state=RoundState.annotating, annotating_at=datetime.now(UTC)
            )
            session.add(round_)
            session.flush()
            example_ids = session.scalars(
                select(Example.id)
                .where(Example.project_id == project.id, Example.split == Split.train)
                .order_by(Example.dataset_index)
                .limit(queries)
            ).all()
            session.execute(
                insert(Query),
                [
                    {
                        "round_id": round_.id,
                        "example_id": example_id,
                        "side": QuerySide.excessive if i % 2 == 0 else QuerySide.deficient,
                        "score": 1.0,
                        "required_answers": 2,
                        "answer_count": 0,
                        "sigma_index_before": 30,
                        "status": "open",
                    }
                    for i, example_id in enumerate(example_ids)
                ],
            )
            lead_token = create_login_token(session, lead)
            tokens = [create_login_token(session, person) for person in people]
        # A live database has planner statistics; a bulk-loaded one has none until autovacuum runs.
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
        return project.id, lead_token, tokens
    finally:
        engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(name: str, seconds: list[float]) -> dict[str, object]:
    milliseconds = [1000 * value for value in seconds]
    return {
        "name": name,
        "n": len(milliseconds),
        "p50": percentile(milliseconds, 0.50),
        "p99": percentile(milliseconds, 0.99),
        "mean": statistics.fmean(milliseconds),
    }


def time_project_reads(base: str, project_id: int, token: str, count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(5):  # warm-up: connection, caches
            client.get(f"/api/v1/projects/{project_id}").raise_for_status()
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(f"/api/v1/projects/{project_id}")
            timings.append(time.perf_counter() - started)
            response.raise_for_status()
    return timings


def annotate(
    base: str, project_id: int, token: str, tasks: int, timings: list[float], lock: threading.Lock
) -> None:
    """One annotator: take a task (timed), answer it (not timed), `tasks` times or until none is left."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(tasks):
            started = time.perf_counter()
            response = client.post("/api/v1/tasks/next", params={"project_id": project_id})
            elapsed = time.perf_counter() - started
            if response.status_code == 204:
                return
            response.raise_for_status()
            with lock:
                timings.append(elapsed)
            answer = client.post(
                f"/api/v1/tasks/{response.json()['id']}/annotation",
                json={"sigma_index": 40, "seconds": 1.0},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            answer.raise_for_status()


def time_next_task(base: str, project_id: int, tokens: list[str], tasks_each: int) -> list[float]:
    timings: list[float] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=annotate, args=(base, project_id, token, tasks_each, timings, lock))
        for token in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, {platform.system()}"


def write_docs(markdown: str) -> Path:
    path = REPO_ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{SECTION_START}\n{markdown.rstrip()}\n{SECTION_END}"
    if SECTION_START in text:
        text = re.sub(
            re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    return path


def run(database_url: str | None, args: argparse.Namespace) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="aqpl-bench-") as tmp:
        data_dir = Path(tmp)
        url = database_url or f"sqlite:///{data_dir / 'bench.sqlite3'}"
        upgrade_database(url)
        seeded = time.perf_counter()
        project_id, lead_token, tokens = seed(url, args.examples, args.queries, args.annotators)
        print(
            f"seeded {args.examples} examples, {args.queries} queries in {time.perf_counter() - seeded:.1f} s"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AQPL_")}
        env.update({"AQPL_DATA_DIR": str(data_dir), "AQPL_DATABASE_URL": url, "AQPL_LOG_LEVEL": "warning"})
        with (data_dir / "serve.log").open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--no-worker", f"--port={port}"],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        httpx.get(f"{base}/api/v1/health", timeout=2)
                        break
                    except httpx.TransportError:
                        time.sleep(0.2)
                results = [
                    summary(
                        "GET /projects/{id}", time_project_reads(base, project_id, lead_token, args.reads)
                    )
                ]
                results.append(
                    summary(
                        "POST /tasks/next, 1 annotator",
                        time_next_task(base, project_id, tokens[:1], args.tasks),
                    )
                )
                results.append(
                    summary(
                        f"POST /tasks/next, {len(tokens) - 1} annotators at once",
                        time_next_task(base, project_id, tokens[1:], args.tasks),
                    )
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000, help="training examples (default 10000)")
    parser.add_argument("--queries", type=int, default=2000, help="open queries of the round, overlap 2")
    parser.add_argument("--annotators", type=int, default=9, help="1 sequential + the rest in parallel")
    parser.add_argument("--reads", type=int, default=300, help="timed GET /projects/{id}")
    parser.add_argument("--tasks", type=int, default=100, help="timed tasks/next per annotator")
    parser.add_argument("--database-url", action="append", default=[], help="also run on this database")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    runs: list[tuple[str, list[dict[str, object]]]] = []
    if not args.no_sqlite:
        runs.append(("SQLite (embedded default, WAL)", run(None, args)))
    for url in args.database_url:
        with scratch_database(url, "aqpl_bench") as scratch_url:
            runs.append((f"PostgreSQL {make_url(url).host}", run(scratch_url, args)))

    lines = [
        f"## Project API latency ({args.examples:,}-example project)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/bench_project_api.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine()}; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one uvicorn process "
        "(`aqpl serve --no-worker`), client on the same machine over HTTP keep-alive; "
        f"1-minute load average at the end {os.getloadavg()[0]:.1f} (other jobs shared the CPUs).  ",
        f"Project: {args.examples} training + {args.examples // 5} test examples; round 1 annotating with "
        f"{args.queries} queries (overlap 2). Every `tasks/next` takes a new lease (each task is answered "
        "before the next call; answers are not timed).",
        "",
        "| database | request | n | p50 (ms) | p99 (ms) | mean (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for database, results in runs:
        for row in results:
            cells = [
                database,
                row["name"],
                row["n"],
                f"{row['p50']:.1f}",
                f"{row['p99']:.1f}",
                f"{row['mean']:.1f}",
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    if not args.no_docs:
        print(f"written to {write_docs(markdown)}")


if __name__ == "__main__":
    main()
