"""The one-machine demo: local logins and a project on scikit-learn's digits, made once.

`aqpl demo` only writes rows and sends `datasets.import`; the worker imports, pretrains and,
because the project says `open_first_round`, opens round 1 by itself once it is ready.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from aqpl.corruption_names import CORRUPTION_NAMES
from backend.files import create_private_file
from backend.models import Project, Role
from backend.projects.config import DatasetSpec, EvaluationOptions
from backend.projects.schemas import ProjectCreate
from backend.projects.service import create_project
from backend.settings import Settings
from backend.users.service import create_user, get_user_by_name

DEMO_USERS = (("admin", Role.admin), ("annotator1", Role.annotator), ("annotator2", Role.annotator))


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str


def seed_demo(session: Session, data_dir: Path) -> list[DemoLogin]:
    """Create the demo users once; their passwords are kept in data_dir/demo_logins.json (mode 600)."""
    logins_file = data_dir / "demo_logins.json"
    if logins_file.exists():
        return [DemoLogin(**item) for item in json.loads(logins_file.read_text())]
    logins = []
    for username, role in DEMO_USERS:
        if get_user_by_name(session, username) is not None:
            continue
        password = secrets.token_urlsafe(9)
        create_user(session, username, password, role)
        logins.append(DemoLogin(username, password, role.value))
    create_private_file(logins_file, json.dumps([asdict(login) for login in logins], indent=2))
    return logins


DEMO_PROJECT_NAME = "Demo: handwritten digits"
DEMO_SKIPPED_CORRUPTIONS = frozenset({"gaussian_noise", "glass_blur", "frost"})
# Sized for a laptop CPU (ready in about a minute): 1438 training digits, a few epochs, 20 draws.
DEMO_PROJECT = ProjectCreate(
    name=DEMO_PROJECT_NAME,
    dataset=DatasetSpec(format="digits"),
    model="small_cnn",
    method="gnt",
    draws=20,
    budget=10,
    overlap=2,
    initial_sigma=0.3,
    epochs=4,
    finetune_epochs=2,
    batch_size=64,
    auto_close=True,
    open_first_round=True,
    # The cheap common corruptions at three severities (glass blur and frost alone would take
    # minutes; Gaussian noise is measured on its own as the Gaussian score).
    evaluation=EvaluationOptions(
        corruptions=[name for name in CORRUPTION_NAMES if name not in DEMO_SKIPPED_CORRUPTIONS],
        severities=[1, 3, 5],
    ),
)


def seed_demo_project(session: Session, settings: Settings) -> Project | None:
    """The demo project, owned by the demo admin: made (and sent to the worker) the first time only."""
    existing = session.scalar(select(Project).where(Project.name == DEMO_PROJECT_NAME))
    if existing is not None:
        return existing
    owner = get_user_by_name(session, "admin")
    if owner is None:
        return None
    return create_project(session, settings, owner, DEMO_PROJECT)
