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
import random
import ssl
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
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
    this_machine,
)
from sqlalchemy import Engine, func, select

from backend.db import create_db_engine
from backend.models import Annotation, Query, RoundState

NEXT, SUBMIT = "tasks/next", "submit"
EMPTY_POLL_SECONDS = 5.0  # after a 204 the annotation page asks again in 5 s (frontend/static/js/annotate.js)


@dataclass
class Stats(ClientLog):
    # Time inside the app (its Server-Timing header): the latency without HTTP parsing, socket
    # queues and this client's own event loop.
    app_latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # seconds
    started_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # perf_counter
    abandoned: int = 0
    refused: int = 0  # 503 + Retry-After (admission control): waited out and sent again, as the page does
    retried: int = 0
    dropped: int = 0


# ---------------------------------------------------------------- database


def open_queries(engine: Engine, round_id: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count(Query.id)).where(Query.round_id == round_id, Query.status == "open")
            )
            or 0
        )


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
    record = read_round(engine, round_id)
    per_query = record.answers_per_query()
    wrong = [
        (q, n, s, per_query[q])
        for q, n, _required, s in record.queries
        if not (n == per_query[q] == config.overlap and s == "complete")
    ]
    if len(record.queries) != config.queries:
        problems.append(f"{len(record.queries)} queries in the round, expected {config.queries}")
    if wrong:
        problems.append(f"{len(wrong)} queries without exactly {config.overlap} answers, e.g. {wrong[:5]}")
    if stats.refused:
        print(f"note: {stats.refused} requests refused with 503 + Retry-After and sent again")
    problems += answer_problems(record, stats)
    if record.state != RoundState.aggregating:
        problems.append(f"the round is {record.state}, expected aggregating (auto-closed by the last answer)")
    return problems


def report(
    config: LoadConfig,
    stats: Stats,
    wall: float,
    answers: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    print(this_machine())
    before = " ".join(f"{value:.2f}" for value in load_before)
    after = " ".join(f"{value:.2f}" for value in load_after)
    print(f"load average (1, 5, 15 min) before: {before}; after: {after}")
    print(
        f"config: {config.annotators} annotators, {config.queries} queries x {config.overlap} answers, "
        f"{config.api_workers} API processes, lease {config.lease_seconds} s, think {config.think_ms:g} ms, "
        f"abandon/retry/drop {config.p_abandon:.0%}/{config.p_retry:.0%}/{config.p_drop:.0%}, "
        f"gold {config.gold_queries} queries at rate {config.gold_rate:g}"
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
    add_server_arguments(parser)
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
    parser.add_argument("--gold-queries", type=int, default=defaults.gold_queries, help="gold queries")
    parser.add_argument("--gold-rate", type=float, default=defaults.gold_rate, help="share of gold tasks")
    parser.add_argument(
        "--keep-database", action="store_true", help="do not drop the database (to EXPLAIN queries)"
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
        gold_queries=args.gold_queries,
        gold_rate=args.gold_rate,
    )
    with served_round(
        config,
        server_url=args.server_url,
        redis_url=args.redis_url,
        repo=args.repo,
        prefix="aqpl_load",
        connect=create_db_engine,
        keep=args.keep_database,
        verbose=True,
    ) as serving:
        engine = serving.engine
        print(f"server up on port {serving.port}; {config.annotators} annotators start", flush=True)
        load_before = os.getloadavg()
        cpu_before = cpu_seconds(serving.process.pid)
        simulation = Simulation(f"http://127.0.0.1:{serving.port}", config, engine, serving.round_id)
        # The clients' own full garbage collections paused this event loop for up to ~150 ms,
        # charged to every request in flight: measure the server, not the instrument.
        gc.freeze()
        gc.disable()
        try:
            wall = asyncio.run(simulation.run(serving.annotators))
        finally:
            gc.enable()
        cpu_after = cpu_seconds(serving.process.pid)
        load_after = os.getloadavg()
        problems = verify(engine, serving.round_id, config, simulation.stats)
        with engine.connect() as connection:
            answers = int(connection.scalar(select(func.count(Annotation.id))) or 0)
            gold_answers = int(
                connection.scalar(
                    select(func.count(Annotation.id))
                    .join(Query, Query.id == Annotation.query_id)
                    .where(Query.status == "gold")
                )
                or 0
            )
        report(config, simulation.stats, wall, answers, load_before, load_after)
        if config.gold_queries:
            print(f"gold answers: {gold_answers} of {answers} ({gold_answers / max(answers, 1):.1%})")
        requests = sum(len(values) for values in simulation.stats.latencies.values())
        used = cpu_used(cpu_before, cpu_after)
        print(
            f"CPU used (core-seconds): API {used['api']:.1f}, PostgreSQL {used['postgres']:.1f}, "
            f"client {used['client']:.1f}, other processes on the machine {used['others']:.1f}, "
            f"of {wall * (os.cpu_count() or 1):.1f} available"
        )
        print(
            f"CPU per request: API {1000 * used['api'] / max(requests, 1):.1f} ms, PostgreSQL "
            f"{1000 * used['postgres'] / max(requests, 1):.1f} ms ({requests} requests)"
        )
        traceback = serving.server_traceback()
        if traceback is not None:
            problems.append(traceback)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("OK: every query has exactly its answers, no duplicates, no lost submits, no 5xx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
