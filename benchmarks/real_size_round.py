"""A real-size round through the platform on this machine: time per state, scoring variants, projections.

One ResNet18 project on ../shared/data/cifar10-subset.npz (4,000 CIFAR-10 training images, 1,000
test), run the way a lead runs one on a single machine: `aqpl serve` (API + its embedded worker,
SQLite, no other servers), everything over REST.

1. The round: create the project (import, GNT pretraining, evaluation of round 0), open round 1,
   let two scripted annotators answer every task over REST (their σ is drawn at random: this run
   measures time, not accuracy), and wait for `published`. Prints the project's pretraining time and
   the round's `state_seconds`, `forward_passes` and `scoring_seconds` as GET /rounds/{id} reports them.
2. Scoring variants: the same model (round 1's checkpoint) scores the same σ again for each
   `scoring` (exact, adaptive) x AQPL_SCORING_PRECISION (fp32, bf16, int8). For each precision the
   server restarts with that setting; for each mode the harness sets the project's `scoring` in the
   database (no route changes a project's settings), opens a round over REST, waits for
   `annotating` (the scoring state is then over and recorded) and deletes that round, so that the
   next variant scores round 1's model again. The other states do not read these settings.
3. Projections, marked as such: the round's work counted in images (training images, forward
   passes, evaluation images), scaled to CIFAR-10's 50,000 training images (x 12.5; the test set
   is the same 10,000 images CIFAR-10 has, x 10), over (a) the throughputs measured in this run on
   this CPU and (b) GPU throughputs given as --gpu-train-img-s / --gpu-infer-img-s (assumptions
   until `run` on a GPU measures them: see docs/scale.md).

Results go to docs/results/real_size_round.json (each step as soon as it is measured, so a long
run keeps what it did) and, with --docs, into docs/scale.md between its markers.

    .venv/bin/python benchmarks/real_size_round.py --docs                  # the whole run (~1 hour)
    .venv/bin/python benchmarks/real_size_round.py --variants adaptive:bf16 --train-limit 400 \\
        --test-limit 200 --epochs 1 --budget 10 --corruptions gaussian_noise   # a 3-minute smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from load_support import free_port, stop_server, this_machine
from sqlalchemy import delete, func, select

from backend.auth.service import create_login_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.migrate import upgrade_database
from backend.models import Project, Query, Role, Round, Score, User
from backend.security import hash_password

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10-subset.npz"
RESULTS = REPO_ROOT / "docs" / "results" / "real_size_round.json"
DOC = REPO_ROOT / "docs" / "scale.md"


def section_markers(section: str) -> tuple[str, str]:
    """docs/scale.md's markers around a run's text: `section` names a run kept beside the latest."""
    name = f"real_size_round:{section}" if section else "real_size_round"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


ROUND_STATES = ("scoring", "annotating", "aggregating", "training", "evaluating")
FULL_SIZE = {"train": 50_000, "test": 10_000}  # CIFAR-10
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path


def start_server(data_dir: Path, database_url: str, import_root: Path, precision: str) -> Server:
    """`aqpl serve` with its embedded worker (the one-machine default), scoring at `precision`."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AQPL_")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "AQPL_DATA_DIR": str(data_dir),
            "AQPL_DATABASE_URL": database_url,
            "AQPL_IMPORT_ROOT": str(import_root),
            "AQPL_SCORING_PRECISION": precision,
            "AQPL_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = data_dir / f"serve-{precision}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", f"--port={port}"],
            env=env,
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aqpl serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return Server(process, base, log)
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(process)
    raise RuntimeError(f"aqpl serve did not answer within 90 s: {log.read_text()[-2000:]}")


def seed_people(database_url: str, annotators: int) -> tuple[str, list[str]]:
    """A lead and annotators with login tokens (nobody types a password in a benchmark)."""
    engine = create_db_engine(database_url)
    password_hash = hash_password(uuid.uuid4().hex)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = User(username="scale-lead", password_hash=password_hash, role=Role.lead)
            people = [
                User(username=f"scale-annotator-{i}", password_hash=password_hash, role=Role.annotator)
                for i in range(annotators)
            ]
            session.add_all([lead, *people])
            session.flush()
            return create_login_token(session, lead), [create_login_token(session, p) for p in people]
    finally:
        engine.dispose()


def set_scoring_mode(database_url: str, project_id: int, mode: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            project = session.get(Project, project_id)
            assert project is not None
            project.config = project.config.model_copy(update={"scoring": mode})
    finally:
        engine.dispose()


def drop_round(database_url: str, round_id: int) -> None:
    """Remove a variant's round (its scores and queries with it) so the next scores round 1's model."""
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            session.execute(delete(Query).where(Query.round_id == round_id))
            session.execute(delete(Score).where(Score.round_id == round_id))
            session.execute(delete(Round).where(Round.id == round_id))
            left = session.scalar(select(func.count(Round.id)).where(Round.id == round_id))
            assert left == 0
    finally:
        engine.dispose()


class Progress:
    """One status line, rewritten in place on a terminal, one line per change otherwise."""

    def __init__(self) -> None:
        self.last = ""
        self.tty = sys.stdout.isatty()

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        if self.tty:
            print(f"\r\033[K{text}", end="", flush=True)
        else:
            print(text, flush=True)

    def done(self) -> None:
        if self.tty and self.last:
            print(flush=True)
        self.last = ""


def describe_progress(name: str, state: str, progress: dict[str, Any] | None, started: float) -> str:
    text = f"{name}: {state}"
    if progress and progress.get("total"):
        text += f" {progress.get('step', '')} {progress['done']}/{progress['total']}"
    return f"{text} [{time.monotonic() - started:,.0f} s]"


def wait_project_ready(client: httpx.Client, project_id: int, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    bar = Progress()
    while time.monotonic() - started < timeout:
        project = client.get(f"/api/v1/projects/{project_id}").raise_for_status().json()
        if project["status"] == "failed":
            raise RuntimeError(f"the project failed: {project['error']}")
        if project["status"] == "ready" and project["latest_checkpoint"] is not None:
            bar.done()
            return dict(project)
        bar.show(describe_progress("project", project["status"], project["progress"], started))
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"the project was not ready after {timeout:.0f} s")


def wait_round(client: httpx.Client, round_id: int, states: set[str], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    bar = Progress()
    while time.monotonic() - started < timeout:
        round_ = client.get(f"/api/v1/rounds/{round_id}").raise_for_status().json()
        if round_["state"] == "failed":
            raise RuntimeError(f"round {round_id} failed: {round_['error']}")
        if round_["state"] in states:
            bar.done()
            return dict(round_)
        bar.show(describe_progress(f"round {round_['number']}", round_["state"], round_["progress"], started))
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"round {round_id} did not reach {sorted(states)} in {timeout:.0f} s")


def annotate_all(base: str, project_id: int, tokens: list[str], seed: int) -> int:
    """Each annotator takes and answers tasks until none is left; returns the answers given."""
    answered = [0] * len(tokens)

    def one(position: int, token: str) -> None:
        draw = random.Random(seed + position)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                task = client.post("/api/v1/tasks/next", params={"project_id": project_id})
                if task.status_code == 204:
                    return
                task.raise_for_status()
                client.post(
                    f"/api/v1/tasks/{task.json()['id']}/annotation",
                    json={"sigma_index": draw.randint(5, 60), "seconds": 1.0},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                ).raise_for_status()
                answered[position] += 1

    threads = [threading.Thread(target=one, args=(i, token)) for i, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def project_config(args: argparse.Namespace) -> dict[str, Any]:
    evaluation: dict[str, Any] = {}
    if args.corruptions:
        evaluation["corruptions"] = args.corruptions.split(",")
    if args.test_limit:
        evaluation["test_limit"] = args.test_limit
    dataset: dict[str, Any] = {"format": "npz", "path": args.data.name}
    if args.train_limit:
        dataset["train_limit"] = args.train_limit
    return {
        "name": "real-size round",
        "dataset": dataset,
        "model": "resnet18",
        "method": "gnt",
        "budget": args.budget,
        "overlap": args.annotators,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "scoring": "adaptive",
        "evaluation": evaluation,
        "seed": args.seed,
    }


def run_round(args: argparse.Namespace, results: dict[str, Any], data_dir: Path, url: str) -> int:
    lead, annotators = seed_people(url, args.annotators)
    results["setup"] = project_config(args)
    server = start_server(data_dir, url, args.data.parent, args.round_precision)
    try:
        with httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {lead}"}, timeout=60
        ) as client:
            created = time.monotonic()
            project = client.post("/api/v1/projects", json=project_config(args)).raise_for_status().json()
            ready = wait_project_ready(client, project["id"], args.timeout)
            results["project"] = {
                "id": project["id"],
                "num_train": ready["num_train"],
                "num_test": ready["num_test"],
                "import_pretrain_evaluate_seconds": time.monotonic() - created,
                "round0_metrics": ready["latest_checkpoint"]["metrics"],
            }
            seconds = results["project"]["import_pretrain_evaluate_seconds"]
            print(f"project {project['id']} ready in {seconds:,.0f} s")
            save(results, args.results)
            opened = time.monotonic()
            round_ = client.post(f"/api/v1/projects/{project['id']}/rounds").raise_for_status().json()
            wait_round(client, round_["id"], {"annotating"}, args.timeout)
            answers = annotate_all(server.base, project["id"], annotators, args.seed)
            final = wait_round(client, round_["id"], {"published"}, args.timeout)
            checkpoint = (
                client.get(f"/api/v1/projects/{project['id']}").raise_for_status().json()["latest_checkpoint"]
            )
            results["round"] = {
                "precision": args.round_precision,
                "scoring": "adaptive",
                "wall_seconds": time.monotonic() - opened,
                "answers": answers,
                "state_seconds": final["state_seconds"],
                "forward_passes": final["forward_passes"],
                "scoring_seconds": final["scoring_seconds"],
                "metrics": checkpoint["metrics"],
            }
            print(f"round 1 published in {results['round']['wall_seconds']:,.0f} s: {final['state_seconds']}")
            save(results, args.results)
            return int(project["id"])
    finally:
        stop_server(server.process)


def run_variants(
    args: argparse.Namespace, results: dict[str, Any], data_dir: Path, url: str, project_id: int
) -> None:
    lead = seed_people_once(url)
    by_precision: dict[str, list[str]] = {}
    for variant in args.variants.split(","):
        mode, precision = variant.split(":")
        by_precision.setdefault(precision, []).append(mode)
    variants = results.setdefault("variants", {})
    for precision, modes in by_precision.items():
        server = start_server(data_dir, url, args.data.parent, precision)
        try:
            headers = {"Authorization": f"Bearer {lead}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=60) as client:
                for mode in modes:
                    set_scoring_mode(url, project_id, mode)
                    round_ = client.post(f"/api/v1/projects/{project_id}/rounds").raise_for_status().json()
                    scored = wait_round(client, round_["id"], {"annotating"}, args.timeout)
                    picked = client.get(f"/api/v1/rounds/{round_['id']}/queries").raise_for_status().json()
                    variants[f"{mode}:{precision}"] = {
                        "scoring_state_seconds": scored["state_seconds"]["scoring"],
                        "scoring_seconds": scored["scoring_seconds"],
                        "forward_passes": scored["forward_passes"],
                        "selected": sorted([query["example_id"], query["side"]] for query in picked),
                    }
                    shown = {
                        key: value
                        for key, value in variants[f"{mode}:{precision}"].items()
                        if key != "selected"
                    }
                    print(f"{mode} {precision}: {shown}")
                    save(results, args.results)
                    drop_round(url, round_["id"])
        finally:
            stop_server(server.process)
    set_scoring_mode(url, project_id, "adaptive")


def seed_people_once(url: str) -> str:
    engine = create_db_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = session.scalars(select(User).where(User.username == "scale-lead")).one()
            return create_login_token(session, lead)
    finally:
        engine.dispose()


def images_evaluated(metrics: dict[str, Any]) -> int:
    """Test images classified by one evaluation: clean, each Gaussian level, each corruption x severity."""
    corrupted = sum(len(by_severity) for by_severity in metrics["per_corruption"].values())
    sets = 1 + len(metrics["per_gaussian"]) + corrupted
    return int(metrics["test_examples"]) * sets


# The instruction sets that decide bf16's and int8's speed (docs/engine.md).
SPEED_FLAGS = ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """The CPU's model name and which of SPEED_FLAGS it has."""
    model, flags = "unknown CPU", set[str]()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    present = [flag for flag in SPEED_FLAGS if flag in flags]
    return f"{model} ({', '.join(present) if present else 'no bf16/int8 dot-product instructions'})"


def projections(results: dict[str, Any], gpu_train: float, gpu_infer: float) -> dict[str, Any]:
    """The round's states at CIFAR-10 size: measured CPU throughput, and assumed GPU throughput."""
    setup, round_, project = results["setup"], results["round"], results["project"]
    train_images = project["num_train"] * setup["finetune_epochs"]
    evaluation_images = images_evaluated(round_["metrics"])
    seconds = round_["state_seconds"]
    cpu_rates = {
        "training": train_images / seconds["training"],
        "scoring": round_["forward_passes"] / seconds["scoring"],
    }
    scale_train = FULL_SIZE["train"] / project["num_train"]
    scale_test = FULL_SIZE["test"] / round_["metrics"]["test_examples"]
    work = {
        "training": train_images * scale_train,
        "scoring": round_["forward_passes"] * scale_train,
        "evaluating": evaluation_images * scale_test,
    }
    cpu = {
        "training": seconds["training"] * scale_train,
        "scoring": seconds["scoring"] * scale_train,
        "evaluating": seconds["evaluating"] * scale_test,
    }
    gpu = {
        "training": work["training"] / gpu_train,
        "scoring": work["scoring"] / gpu_infer,
        "evaluating": work["evaluating"] / gpu_infer,
    }
    return {
        "cpu_rates_img_s": cpu_rates,
        "work_images_50k": work,
        "cpu_seconds_50k": cpu,
        "gpu_assumed_img_s": {"train": gpu_train, "infer": gpu_infer},
        "gpu_seconds_50k": gpu,
    }


def hours(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def markdown(results: dict[str, Any]) -> str:
    return "\n".join([*round_lines(results), *variant_lines(results), *projection_lines(results)])


def round_lines(results: dict[str, Any]) -> list[str]:
    setup, project, round_ = results["setup"], results["project"], results["round"]
    corruptions = setup["evaluation"].get("corruptions")
    evaluated = "all 15 corruptions" if not corruptions else ", ".join(corruptions)
    lines = [
        f"Measured {results['started']} on {results['machine']} (`{results['command']}`).",
        "",
        f"Project: ResNet18, GNT, {project['num_train']:,} training and "
        f"{round_['metrics']['test_examples']:,} test images, B = {setup['budget']} per side, "
        f"k = {setup['overlap']}, M = 50, {setup['epochs']} pretraining and {setup['finetune_epochs']} "
        f"fine-tuning epochs; evaluation: clean, Gaussian noise and {evaluated} at 5 severities.",
        "",
        "Import, pretraining and round 0's evaluation: "
        f"{hours(project['import_pretrain_evaluate_seconds'])}.",
        "",
        f"**Round 1** (adaptive scoring, AQPL_SCORING_PRECISION={round_['precision']}), "
        f"{round_['answers']} answers from {setup['overlap']} scripted annotators over REST; "
        f"open to published {hours(round_['wall_seconds'])}:",
        "",
        "| state | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {state} | {round_['state_seconds'].get(state, 0.0):,.1f} |" for state in ROUND_STATES]
    lines += [
        "",
        f"Forward passes {round_['forward_passes']:,} (exact: {project['num_train'] * 50:,}); scoring "
        f"jobs' compute {round_['scoring_seconds']:,.1f} s. Accuracy after the round: clean "
        f"{round_['metrics']['clean']:.3f}, Gaussian {round_['metrics']['gaussian']:.3f}, corruptions "
        f"{round_['metrics']['corruptions']:.3f}.",
        "",
    ]
    return lines


def variant_lines(results: dict[str, Any]) -> list[str]:
    variants = results.get("variants") or {}
    if not variants:
        return []
    exact_fp32 = variants.get("exact:fp32", {}).get("scoring_state_seconds")
    lines = [
        "**The scoring state** for each setting, same model and σ (round 1's); *same picks* is the share "
        "of exact fp32's 2B selected (example, side) pairs that the setting selected too:",
        "",
        "| scoring | precision | `scoring` state, s | forward passes | noisy img/s | vs exact fp32 "
        "| same picks |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in variants.items():
        mode, precision = name.split(":")
        speed = row["forward_passes"] / row["scoring_state_seconds"]
        ratio = f"{exact_fp32 / row['scoring_state_seconds']:.2f}x" if exact_fp32 else "n/a"
        lines.append(
            f"| {mode} | {precision} | {row['scoring_state_seconds']:,.1f} | "
            f"{row['forward_passes']:,} | {speed:,.0f} | {ratio} "
            f"| {same_picks(row, variants.get('exact:fp32'))} |"
        )
    return [*lines, ""]


def same_picks(row: dict[str, Any], reference: dict[str, Any] | None) -> str:
    """The share of the reference's selected (example, side) pairs that `row` selected too."""
    if reference is None or "selected" not in row or "selected" not in reference:
        return "n/a"  # a run from before the selections were recorded
    mine = {tuple(pair) for pair in row["selected"]}
    theirs = {tuple(pair) for pair in reference["selected"]}
    return f"{len(mine & theirs) / max(len(theirs), 1):.0%}"


def projection_lines(results: dict[str, Any]) -> list[str]:
    projection = results.get("projection")
    if not projection:
        return []
    gpu = projection["gpu_assumed_img_s"]
    lines = [
        "**Projection, not a measurement.** The same round at CIFAR-10 size (50,000 training, 10,000 "
        "test images): the work above scaled by 12.5 (training) and by the test set's ratio, over this "
        f"run's CPU throughput, and over one GPU at an assumed {gpu['train']:,.0f} training and "
        f"{gpu['infer']:,.0f} inference images/s (assumed rates, not measured here):",
        "",
        "| state | images | this CPU (projected) | one GPU (projected, assumed rates) |",
        "|---|---:|---:|---:|",
    ]
    for state in ("scoring", "training", "evaluating"):
        lines.append(
            f"| {state} | {projection['work_images_50k'][state]:,.0f} | "
            f"{hours(projection['cpu_seconds_50k'][state])} | "
            f"{hours(projection['gpu_seconds_50k'][state])} |"
        )
    return [*lines, ""]


def write_doc(text: str, section: str) -> None:
    page = DOC.read_text()
    start_marker, end_marker = section_markers(section)
    start, end = page.index(start_marker), page.index(end_marker)
    DOC.write_text(page[: start + len(start_marker)] + "\n" + text.rstrip() + "\n" + page[end:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the .npz archive")
    parser.add_argument("--train-limit", type=int, default=None, help="fewer training images (smoke runs)")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate on fewer test images")
    parser.add_argument("--corruptions", default="", help="comma-separated (default: all 15)")
    parser.add_argument("--epochs", type=int, default=5, help="pretraining epochs (the platform's default)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--budget", type=int, default=100, help="B queries per side")
    parser.add_argument("--annotators", type=int, default=2, help="scripted annotators = overlap k")
    parser.add_argument("--round-precision", default="auto", help="AQPL_SCORING_PRECISION of round 1")
    parser.add_argument(
        "--variants",
        default="adaptive:bf16,exact:bf16,adaptive:int8,exact:int8,adaptive:fp32,exact:fp32",
        help="scoring:precision pairs to time after the round ('' for none)",
    )
    parser.add_argument("--gpu-train-img-s", type=float, default=20_000.0, help="assumed, for the projection")
    parser.add_argument(
        "--gpu-infer-img-s", type=float, default=100_000.0, help="assumed, for the projection"
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for any one step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", action="store_true", help="write the result into docs/scale.md")
    parser.add_argument("--render", action="store_true", help="re-render the saved JSON, run nothing")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="the JSON the run writes (--render reads)"
    )
    parser.add_argument(
        "--section",
        default="",
        help="docs/scale.md's section for --docs: '' the latest run, else a named one",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the data folder here")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.results.read_text())
        saved["projection"] = projections(saved, args.gpu_train_img_s, args.gpu_infer_img_s)
        publish(saved, args)
        return
    if not args.data.is_file():
        parser.error(f"{args.data}: no such file (see ../shared/data/README.md)")
    results: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu_model()}; {this_machine()}",
        "command": "python benchmarks/real_size_round.py " + " ".join(sys.argv[1:]),
    }
    with tempfile.TemporaryDirectory(prefix="aqpl-scale-") as scratch:
        data_dir = args.keep or Path(scratch)
        data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{data_dir / 'aqpl.sqlite3'}"
        upgrade_database(url)
        project_id = run_round(args, results, data_dir, url)
        if args.variants:
            run_variants(args, results, data_dir, url, project_id)
    results["projection"] = projections(results, args.gpu_train_img_s, args.gpu_infer_img_s)
    publish(results, args)


def publish(results: dict[str, Any], args: argparse.Namespace) -> None:
    save(results, args.results)
    text = markdown(results)
    print(text)
    if args.docs:
        write_doc(text, args.section)


if __name__ == "__main__":
    main()
