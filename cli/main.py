"""The `aqpl` command: the composition root, the one place that may start both the API and workers.

Imports are made inside each command so that `aqpl serve` never loads torch into the API process.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Annotated, Any

import typer

from aqpl import job_names
from cli import accounts
from cli.embedded_worker import EmbeddedWorker, worker_beside
from cli.pull import pull
from cli.simulate import simulate

app = typer.Typer(
    help="AQPL Studio: serve the platform, run workers, manage the database and users.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
system_app = typer.Typer(help="Checks of the running platform.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(system_app, name="system")
app.command("simulate")(simulate)
app.command("pull")(pull)
accounts.register(users_app)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# Group and others lose every permission on what this process creates: files 0600, folders 0700.
# The data dir holds the database, the secret key, uploads, datasets and checkpoints; set before
# anything is created (settings make the secret key), and inherited by the processes started here.
PRIVATE_UMASK = 0o077


def _private_files() -> None:
    os.umask(PRIVATE_UMASK)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Run the migrations up to REVISION on the configured database."""
    _private_files()  # the SQLite file and the data dir may be created here
    from backend.migrate import upgrade_database
    from backend.settings import get_settings

    url = get_settings().database_url
    upgrade_database(url, revision)
    typer.echo(f"database at {revision}: {url.split('@')[-1]}")


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin, lead or annotator.")] = "annotator",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user; the password comes from a prompt or from stdin."""
    _private_files()
    from backend.db import create_db_engine, make_session_factory, unit_of_work
    from backend.errors import DomainError
    from backend.logging_config import configure_logging
    from backend.models import Role
    from backend.settings import get_settings
    from backend.users.service import create_user

    configure_logging(get_settings())  # the account's creation is an audit event
    if role not in Role.__members__:
        _fail(f"unknown role {role!r}: choose admin, lead or annotator")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    engine = create_db_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            user = create_user(session, username, password, Role(role))
            typer.echo(f"created {user.role.value} {user.username!r} (id {user.id})")
    except DomainError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()


@system_app.command("ping")
def system_ping(timeout: Annotated[float, typer.Option(help="Seconds to wait for a worker.")] = 60.0) -> None:
    """Send `system.ping` through the broker and wait until a worker has written it to the database."""
    from sqlalchemy import select

    from backend.db import create_db_engine, make_session_factory, unit_of_work
    from backend.models import WorkerHeartbeat
    from backend.queue import JobSender, make_celery
    from backend.settings import get_settings

    settings = get_settings()
    token = uuid.uuid4().hex
    JobSender(make_celery(settings)).send(job_names.PING, token)
    engine = create_db_engine(settings.database_url)
    factory = make_session_factory(engine)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with unit_of_work(factory) as session:
                hostname = session.scalar(
                    select(WorkerHeartbeat.hostname).where(WorkerHeartbeat.token == token)
                )
            if hostname is not None:
                typer.echo(f"pong from worker on {hostname}")
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    _fail(
        f"no worker answered within {timeout:g} s (is `aqpl worker` running against {settings.broker_url}?)"
    )


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="Where `aqpl serve` will answer (printed for you).")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Seed the local demo once (logins and demo project) and print how to sign in.

    The project's pretraining is sent to the worker (`aqpl serve` runs one); round 1 opens by
    itself once the project is ready.
    """
    _private_files()  # demo_logins.json holds passwords
    from backend.db import create_db_engine, make_session_factory, unit_of_work
    from backend.demo import DEMO_PROJECT_NAME, seed_demo, seed_demo_project
    from backend.queue import JobSender, install_outbox, make_celery
    from backend.settings import get_settings

    settings = get_settings()
    engine = create_db_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        install_outbox(factory, JobSender(make_celery(settings)))
        with unit_of_work(factory) as session:
            logins = seed_demo(session, settings.data_dir)
            project = seed_demo_project(session, settings)
            project_id = project.id if project is not None else None
    finally:
        engine.dispose()
    if project_id is not None:
        typer.echo(
            f"demo project {DEMO_PROJECT_NAME!r} (id {project_id}): the worker imports and pretrains it, "
            "then opens round 1 (a few minutes on a CPU)"
        )
    typer.echo(f"AQPL Studio: {url.rstrip('/')}/  (API docs: {url.rstrip('/')}/api/docs)")
    typer.echo("demo logins (kept in data/demo_logins.json):")
    for login in logins:
        typer.echo(f"  {login.role:<10} {login.username:<12} password: {login.password}")


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues (default: AQPL_QUEUE).")] = "",
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes (one per GPU is typical).")] = 1,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Start a Celery worker for the configured broker and database."""
    _private_files()  # images, checkpoints, corruption caches
    from backend.logging_config import configure_logging
    from backend.settings import get_settings
    from worker.celery_app import app as celery_app

    configure_logging(get_settings())  # now: Celery warns (as root, ...) before its own logging set-up
    queues = queues or get_settings().queue
    celery_app.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    """uvicorn.run, except that with several processes their shared socket is made a TCP one.

    uvicorn binds that socket with protocol 0, and asyncio turns TCP_NODELAY on for accepted
    connections only when the protocol is IPPROTO_TCP: without it every response (headers, then
    body) waits ~40 ms for the client's delayed ACK (Nagle), 20x a small request's own time.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from backend.logging_config import logging_config
    from backend.settings import get_settings

    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": os.environ.get("AQPL_LOG_LEVEL", "info"),
        # Applied by uvicorn in this process and in each API process it starts.
        "log_config": logging_config(get_settings()),
        # X-Forwarded-For names the client only when a proxy of AQPL_FORWARDED_ALLOW_IPS sent it.
        # Always passed: uvicorn would otherwise trust 127.0.0.1 (or $FORWARDED_ALLOW_IPS), and any
        # local client could then pick a new address per request to escape the login throttle.
        "proxy_headers": bool(get_settings().forwarded_allow_ips),
        "forwarded_allow_ips": get_settings().forwarded_allow_ips,
    }
    if workers == 1:
        uvicorn.run("backend.app:create_app", **options)
        return
    config = uvicorn.Config("backend.app:create_app", **options)
    bound = config.bind_socket()
    # socket(fileno=...) reads family, type and protocol from the descriptor: IPPROTO_TCP.
    shared = socket.socket(fileno=bound.detach())
    shared.set_inheritable(True)
    Multiprocess(config, sockets=[shared]).run()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only (workers run elsewhere).")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="API processes.")] = 1,
) -> None:
    """Serve the API and pages; unless --no-worker, also run a worker process beside it."""
    _private_files()  # uploads, the broker's messages; the worker started below inherits it
    from backend.metrics.multiprocess import prepare_metrics_dir
    from backend.settings import get_settings

    # Before any API process starts: they inherit the folder where they count requests together.
    prepare_metrics_dir(get_settings())
    # Stopped with the API however it stops: signals, an exception, or a crash (cli/embedded_worker.py).
    worker = None if no_worker else EmbeddedWorker([sys.executable, "-m", "cli", "worker", "--pool=solo"])
    with worker_beside(worker):
        _run_uvicorn(host, port, workers)
