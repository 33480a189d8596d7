"""The one-machine demo: local logins (and, once projects exist, a demo project), made once."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from backend.models import Role
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
    data_dir.mkdir(parents=True, exist_ok=True)
    logins_file.write_text(json.dumps([asdict(login) for login in logins], indent=2))
    logins_file.chmod(0o600)
    return logins
