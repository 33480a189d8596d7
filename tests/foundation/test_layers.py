"""The layers of docs/architecture.md, read from the source: who may import whom.

Bottom to top: aqpl (shared definitions) -> worker/ml and backend -> worker jobs -> cli (entry
points). Every import statement counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PACKAGES = ("aqpl", "backend", "worker", "cli", "frontend", "migrations")


def modules(package: str) -> Iterator[Path]:
    yield from sorted((REPO_ROOT / package).rglob("*.py"))


def imported_names(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def imports_of(package: str) -> dict[str, set[str]]:
    """Each module of `package` (path relative to the repository) -> the modules it imports."""
    return {str(path.relative_to(REPO_ROOT)): set(imported_names(path)) for path in modules(package)}


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in imports_of(package).items()
        for name in sorted(names)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]


def test_the_shared_definitions_import_nothing_of_ours() -> None:
    assert offenders("aqpl", tuple(package for package in PACKAGES if package != "aqpl")) == []


@pytest.mark.parametrize("package", [package for package in PACKAGES if package != "cli"])
def test_nothing_imports_the_entry_points(package: str) -> None:
    assert offenders(package, ("cli",)) == []


def test_the_api_never_imports_the_worker_or_torch() -> None:
    assert offenders("backend", ("worker", "torch", "torchvision")) == []


def test_the_ml_core_is_pure_pytorch() -> None:
    forbidden = ("backend", "worker.jobs", "worker.pipeline", "worker.runtime", "worker.celery_app", "cli")
    forbidden += ("fastapi", "sqlalchemy", "celery", "starlette")
    assert offenders("worker/ml", forbidden) == []


def test_no_two_packages_import_each_other() -> None:
    depends_on = {
        package: {
            name.split(".")[0]
            for names in imports_of(package).values()
            for name in names
            if name.split(".")[0] in PACKAGES and name.split(".")[0] != package
        }
        for package in PACKAGES
    }
    cycles = [
        f"{first} <-> {second}"
        for first in PACKAGES
        for second in depends_on[first]
        if first in depends_on[second] and first < second
    ]
    assert cycles == []
