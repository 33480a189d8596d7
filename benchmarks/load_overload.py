"""Overload: N annotators in a closed loop against `aqpl serve --no-worker --workers 2` on PostgreSQL.

Each cell makes a fresh PostgreSQL database (migrated by the checkout under test, dropped at the
end), seeds one annotating round of Q queries with overlap K (default 20,000 x 1: every submit
completes its query, and the round never runs dry within a cell) and N annotators with their own
API tokens, starts the server and lets the N annotators work for a fixed time. Each annotator:

    POST /tasks/next -> think (uniform in [0.5, 1.5] x T) -> POST /tasks/{id}/annotation
    with a fresh Idempotency-Key; now and then (--replay) the same submit again, which must
    return the very same answer.

A 503 is waited out for its Retry-After (x a random 0.5-1.5) and the same request sent again (a
submit with the same key); a request with no answer after --timeout seconds is a client timeout:
the connection is closed and the request sent again on a new one. The client is a minimal
HTTP/1.1 keep-alive client on asyncio streams (one connection per annotator, ~0.1 ms of CPU a
request where httpx takes ~1 ms), so that on a 2-core machine the load generator does not take the
server's CPU.

Per cell it prints one table row: answers/s, p50/p99/max of both calls (answered requests: 2xx and
4xx), 503s (count and p99 of their latency, and whether each carried Retry-After), client
timeouts, API and PostgreSQL CPU per served request (from /proc; the refusals' CPU is charged to the
requests served), "late" (answers committed after the clients had gone), and the integrity checks
read from the database after the server has stopped: every query's answer rows equal its `answer_count`, never
more than `required_answers`, complete exactly when it has them; no (query, annotator) twice;
every acknowledged submit stored under the id it was told; every replay identical. It also
samples `pg_stat_activity` every 0.5 s (most sessions active, waiting on a lock, and the longest
idle-in-transaction) and counts the answers committed after the clients stopped.

    .venv/bin/python benchmarks/load_overload.py                      # the whole matrix, 60 s cells
    .venv/bin/python benchmarks/load_overload.py --cells 100:0 --seconds 20
    .venv/bin/python benchmarks/load_overload.py --repo /tmp/aqpl-old  # the same cells, older code
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from load_support import (
    Annotator,
    ClientLog,
    LoadConfig,
    add_server_arguments,
    answer_problems,
    cpu_seconds,
    cpu_used,
    percentile_ms,
    read_round,
    served_round,
    stop_server,
    this_machine,
)
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from backend.models import Annotation

NEXT, SUBMIT = "next", "submit"
DEFAULT_CELLS = "1:0,10:0,30:0,100:0,300:0,1:1000,10:1000,30:1000,100:1000,300:1000"


@dataclass(frozen=True)
class Cell:
    annotators: int
    think_ms: float


@dataclass
class Stats(ClientLog):
    refusals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # 503s, s
    refusals_without_retry_after: int = 0
    timeouts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    replays: int = 0
    answers: int = 0  # 201s to a first submit (not replays)
    # Requests still without an answer when the cell ended: (kind, seconds waited so far).
    unanswered_at_end: list[tuple[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------- a minimal HTTP/1.1 client


class Gone(Exception):
    """The connection closed or broke before a full response came back."""


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time (a browser tab's)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post(
        self, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            except OSError as error:
                raise Gone(str(error)) from error
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            response_headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    response_headers[name.strip().lower()] = value.strip()
            length = int(response_headers.get("content-length", "0"))
            content = await self.reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            await self.close()
            raise Gone(str(error)) from error
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, response_headers, content


# ---------------------------------------------------------------- the annotators


class Crowd:
    def __init__(
        self, port: int, cell: Cell, seconds: float, timeout: float, replay: float, seed_: int
    ) -> None:
        self.port = port
        self.cell = cell
        self.seconds = seconds
        self.timeout = timeout
        self.replay = replay
        self.seed = seed_
        self.stats = Stats()
        self.stop_at = 0.0
        self.pending: dict[int, tuple[str, float]] = {}  # annotator -> (kind, started) in flight

    async def call(
        self, connection: Connection, kind: str, path: str, body: bytes, headers: str, rng: random.Random
    ) -> tuple[int, bytes] | None:
        """The response to a request sent until it is answered (503s waited out); None when time is up."""
        while time.monotonic() < self.stop_at:
            started = time.perf_counter()
            self.pending[id(connection)] = (kind, started)
            try:
                status, response_headers, content = await asyncio.wait_for(
                    connection.post(path, body, headers), self.timeout
                )
            except TimeoutError:
                self.stats.timeouts[kind] += 1
                await connection.close()  # a client that gives up goes away
                continue
            except Gone:
                self.stats.transport_errors += 1
                await asyncio.sleep(0.1)
                continue
            finally:
                self.pending.pop(id(connection), None)
            elapsed = time.perf_counter() - started
            self.stats.statuses[kind][status] += 1
            if status == 503:
                self.stats.refusals[kind].append(elapsed)
                retry_after = response_headers.get("retry-after")
                if retry_after is None:
                    self.stats.refusals_without_retry_after += 1
                wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
                await asyncio.sleep(max(0.05, wait) * rng.uniform(0.5, 1.5))
                continue
            self.stats.latencies[kind].append(elapsed)
            return status, content
        return None

    async def annotate(self, annotator: Annotator) -> None:
        rng = random.Random(f"{self.seed}-{annotator.user_id}")
        connection = Connection("127.0.0.1", self.port, annotator.token)
        think = self.cell.think_ms / 1000
        # People sit down over the first second, not all in the same millisecond.
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        try:
            while time.monotonic() < self.stop_at:
                answered = await self.call(connection, NEXT, "/api/v1/tasks/next", b"", "", rng)
                if answered is None:
                    return
                status, content = answered
                if status == 204:
                    await asyncio.sleep(1.0)
                    continue
                if status != 200:
                    self.stats.unexpected.append(f"next {status}: {content[:200]!r}")
                    await asyncio.sleep(1.0)
                    continue
                task_id = int(json.loads(content)["id"])
                if think > 0:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
                key = uuid.uuid4().hex
                body = json.dumps({"sigma_index": rng.randrange(0, 91), "seconds": 1.0}).encode()
                path = f"/api/v1/tasks/{task_id}/annotation"
                first: bytes | None = None
                for attempt in range(2 if rng.random() < self.replay else 1):
                    answered = await self.call(
                        connection, SUBMIT, path, body, f"Idempotency-Key: {key}\r\n", rng
                    )
                    if answered is None:
                        return
                    status, content = answered
                    if status != 201:
                        self.stats.unexpected.append(f"submit {status}: {content[:200]!r}")
                        break
                    if attempt == 0:
                        first = content
                        self.stats.answers += 1
                        self.stats.acknowledged[(annotator.user_id, key)] = int(json.loads(content)["id"])
                    else:
                        self.stats.replays += 1
                        if content != first:
                            self.stats.replay_mismatches.append(f"{first!r} then {content!r}")
        finally:
            await connection.close()

    async def run(self, annotators: list[Annotator]) -> float:
        started = time.monotonic()
        self.stop_at = started + self.seconds
        tasks = [asyncio.ensure_future(self.annotate(annotator)) for annotator in annotators]
        await asyncio.wait(tasks, timeout=self.seconds)
        now = time.perf_counter()
        self.stats.unanswered_at_end = [(kind, now - started) for kind, started in self.pending.values()]
        for task in tasks:
            task.cancel()  # requests still in flight at the bell: the client goes away
        await asyncio.gather(*tasks, return_exceptions=True)
        return time.monotonic() - started


# ---------------------------------------------------------------- what PostgreSQL was doing


class ActivitySampler(threading.Thread):
    """pg_stat_activity of the cell's database every 0.5 s: active, lock waits, idle in transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url, poolclass=NullPool)
        self.database = self.engine.url.database
        self.halt = threading.Event()
        self.samples: list[tuple[int, int, int, float]] = []  # active, waiting on a lock, idle in tx, age

    def run(self) -> None:
        statement = text(
            "SELECT count(*) FILTER (WHERE state = 'active'),"
            " count(*) FILTER (WHERE wait_event_type = 'Lock'),"
            " count(*) FILTER (WHERE state = 'idle in transaction'),"
            " coalesce(max(extract(epoch FROM now() - state_change))"
            "   FILTER (WHERE state = 'idle in transaction'), 0)"
            " FROM pg_stat_activity WHERE datname = :database AND pid <> pg_backend_pid()"
        )
        with self.engine.connect() as connection:
            while not self.halt.wait(0.5):
                row = connection.execute(statement, {"database": self.database}).one()
                connection.commit()
                self.samples.append((int(row[0]), int(row[1]), int(row[2]), float(row[3])))
        self.engine.dispose()

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        active, locks, idle, age = (np.asarray(column) for column in zip(*self.samples, strict=True))
        return (
            f"PostgreSQL sessions: active mean {active.mean():.1f} max {active.max()}, "
            f"waiting on a lock mean {locks.mean():.1f} max {locks.max()}, "
            f"idle in transaction max {idle.max()} (longest {age.max():.1f} s)"
        )


# ---------------------------------------------------------------- checks


def verify(engine: Engine, round_id: int, stats: Stats) -> list[str]:
    problems: list[str] = []
    record = read_round(engine, round_id)
    per_query = record.answers_per_query()
    wrong = [
        (query_id, count, required, status, per_query[query_id])
        for query_id, count, required, status in record.queries
        if count != per_query[query_id] or count > required or (status == "complete") != (count >= required)
    ]
    if wrong:
        problems.append(f"{len(wrong)} queries with surplus or miscounted answers, e.g. {wrong[:5]}")
    problems += answer_problems(record, stats)
    if all(status == "complete" for _q, _n, _r, status in record.queries) and record.state == "annotating":
        problems.append("every query is complete but the round is still annotating")
    return problems


def answer_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count(Annotation.id))) or 0)


# ---------------------------------------------------------------- one cell


@dataclass
class CellResult:
    cell: Cell
    answers_per_second: float
    stats: Stats
    cpu_api_ms: float  # per request served (2xx and 4xx: the refusals' CPU is charged to them)
    cpu_postgres_ms: float
    cpu_api_all_ms: float  # per request that reached the server, refusals included
    cpu_client_s: float
    cpu_others_s: float
    late_answers: int  # committed after the clients had gone
    activity: str
    problems: list[str]


def run_cell(args: argparse.Namespace, cell: Cell) -> CellResult:
    config = LoadConfig(
        annotators=cell.annotators,
        queries=args.queries,
        overlap=args.overlap,
        train_examples=args.queries,
        lease_seconds=args.lease_seconds,
        api_workers=args.api_workers,
        think_ms=cell.think_ms,
        seed=args.seed,
    )
    server_env = dict(item.split("=", 1) for item in args.server_env)
    with served_round(
        config,
        server_url=args.server_url,
        redis_url=args.redis_url,
        repo=args.repo,
        prefix="aqpl_overload",
        connect=lambda url: create_engine(url, poolclass=NullPool),
        server_env=server_env,
    ) as serving:
        engine, data_dir, process = serving.engine, serving.data_dir, serving.process
        sampler = ActivitySampler(serving.url)
        crowd = Crowd(serving.port, cell, args.seconds, args.timeout, args.replay, args.seed)
        cpu_before = cpu_seconds(process.pid)
        sampler.start()
        if args.py_spy_dump:
            threading.Timer(args.seconds / 2, py_spy_dump, (process.pid, data_dir, serving.url)).start()
        gc.freeze()
        gc.disable()  # the client's own collections would pause every request in flight
        try:
            wall = asyncio.run(crowd.run(serving.annotators))
        finally:
            gc.enable()
        cpu_after = cpu_seconds(process.pid)
        sampler.halt.set()
        sampler.join()
        at_the_bell = answer_count(engine)
        stop_server(process)  # lets the server finish (or refuse) what it still had
        late = answer_count(engine) - at_the_bell
        problems = verify(engine, serving.round_id, crowd.stats)
        traceback = serving.server_traceback()
        if traceback is not None:
            problems.append(traceback)
        if args.py_spy_dump and (data_dir / "py-spy.txt").exists():
            dump = Path(args.py_spy_dump) / f"py-spy-{cell.annotators}-{cell.think_ms:g}.txt"
            dump.write_text((data_dir / "py-spy.txt").read_text())
    stats = crowd.stats
    requests = sum(sum(counts.values()) for counts in stats.statuses.values())
    served = sum(len(values) for values in stats.latencies.values())
    used = cpu_used(cpu_before, cpu_after)
    return CellResult(
        cell=cell,
        answers_per_second=stats.answers / wall,
        stats=stats,
        cpu_api_ms=1000 * used["api"] / max(served, 1),
        cpu_postgres_ms=1000 * used["postgres"] / max(served, 1),
        cpu_api_all_ms=1000 * used["api"] / max(requests, 1),
        cpu_client_s=used["client"],
        cpu_others_s=used["others"],
        late_answers=late,
        activity=sampler.summary(),
        problems=problems,
    )


def py_spy_dump(pid: int, data_dir: Path, url: str) -> None:
    """Mid-cell: who blocks whom in PostgreSQL, then every thread's stack of the API processes
    (needs `pip install py-spy`)."""
    children = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        sessions = connection.execute(
            text(
                "SELECT pid, state, wait_event_type, wait_event,"
                " round(extract(epoch FROM now() - xact_start)::numeric, 1),"
                " round(extract(epoch FROM now() - state_change)::numeric, 1),"
                " pg_blocking_pids(pid), left(regexp_replace(query, '\\s+', ' ', 'g'), 160)"
                " FROM pg_stat_activity WHERE datname = :database AND pid <> pg_backend_pid()"
            ),
            {"database": engine.url.database},
        ).all()
    engine.dispose()
    blockers = Counter(blocker for session in sessions for blocker in session[6])
    with (data_dir / "py-spy.txt").open("w") as out:
        out.write(f"==== pg_stat_activity: {len(sessions)} sessions\n")
        states = Counter((session[1], session[2], session[3]) for session in sessions)
        for (state, wait_type, wait), count in states.most_common():
            out.write(f"{count:4d} x {state} (waiting: {wait_type} {wait})\n")
        for session in sessions:
            if session[0] in blockers:
                out.write(
                    f"blocker pid {session[0]} blocks {blockers[session[0]]}: {session[1]}, transaction "
                    f"{session[4]} s old, in this state {session[5]} s; last statement: {session[7]}\n"
                )
        for child in children:
            out.write(f"==== process {child}\n")
            out.flush()
            subprocess.run([str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", child], stdout=out)


# ---------------------------------------------------------------- the table


HEADER = (
    "| annotators | think | answers/s | next p50 / p99 / max (ms) | submit p50 / p99 / max (ms) "
    "| 503s (p99 ms) | timeouts | API CPU / served req | PG CPU / served req | late | integrity |"
)


def row(result: CellResult) -> str:
    stats = result.stats

    def triple(kind: str) -> str:
        values = stats.latencies[kind]
        return " / ".join(f"{percentile_ms(values, q):.0f}" for q in (50, 99, 100))

    refusals = [value for values in stats.refusals.values() for value in values]
    refused = f"{len(refusals)} ({percentile_ms(refusals, 99):.0f})" if refusals else "0"
    if stats.refusals_without_retry_after:
        refused += f", {stats.refusals_without_retry_after} without Retry-After"
    timeouts = sum(stats.timeouts.values())
    return (
        f"| {result.cell.annotators} | {result.cell.think_ms / 1000:g} s | {result.answers_per_second:.1f} "
        f"| {triple(NEXT)} | {triple(SUBMIT)} | {refused} | {timeouts} | {result.cpu_api_ms:.1f} ms "
        f"| {result.cpu_postgres_ms:.1f} ms | {result.late_answers} | "
        f"{'ok' if not result.problems else 'FAILED'} |"
    )


def parse_cells(text_: str) -> list[Cell]:
    cells = []
    for item in text_.split(","):
        annotators, _, think = item.partition(":")
        cells.append(Cell(int(annotators), float(think or 0)))
    return cells


def describe(repo: Path) -> str:
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return f"{repo} at {commit or 'unknown commit'}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cells",
        default=DEFAULT_CELLS,
        help="annotators:think_ms pairs, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each cell")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="a client gives up on a request after this"
    )
    parser.add_argument(
        "--queries", type=int, default=20_000, help="queries in the round (enough for any cell)"
    )
    parser.add_argument("--overlap", type=int, default=1)
    parser.add_argument("--lease-seconds", type=int, default=300)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--replay", type=float, default=0.05, help="probability of sending a submit twice")
    parser.add_argument("--seed", type=int, default=0)
    add_server_arguments(parser)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="AQPL_NAME=VALUE",
        help="a setting for the server (repeatable), e.g. AQPL_MAX_REQUESTS_IN_FLIGHT=8",
    )
    parser.add_argument(
        "--py-spy-dump", metavar="FOLDER", help="write every API thread's stack half-way through each cell"
    )
    args = parser.parse_args()
    print(f"{this_machine()}; serving {describe(args.repo)}")
    print(
        f"{args.queries} queries x {args.overlap} answers, {args.api_workers} API processes, "
        f"{args.seconds:g} s per cell, client timeout {args.timeout:g} s, replay {args.replay:.0%}",
        flush=True,
    )
    results = []
    for cell in parse_cells(args.cells):
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(
            f"-- {cell.annotators} annotators, think {cell.think_ms:g} ms (load average {load})", flush=True
        )
        result = run_cell(args, cell)
        results.append(result)
        stats = result.stats
        print(row(result))
        print(
            f"   statuses {dict(stats.statuses)}; timeouts {dict(stats.timeouts)}; "
            f"{stats.replays} replays; {len(stats.unanswered_at_end)} requests unanswered at the end "
            f"(longest waiting {max((age for _kind, age in stats.unanswered_at_end), default=0):.1f} s); "
            f"API CPU per request refusals included {result.cpu_api_all_ms:.1f} ms; "
            f"CPU: client {result.cpu_client_s:.1f} core-s, "
            f"other processes {result.cpu_others_s:.1f} core-s",
            flush=True,
        )
        print(f"   {result.activity}")
        for problem in result.problems:
            print(f"   PROBLEM: {problem}", flush=True)
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for result in results:
        print(row(result))
    return 1 if any(result.problems for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
