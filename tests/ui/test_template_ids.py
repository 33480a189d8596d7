"""Every page's element ids are unique: labels, scripts and tests find elements by id, and a second
element with the same id is silently never found (a label would point at the wrong input)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

TEMPLATES = REPO_ROOT / "frontend" / "templates"
# Fragments a page loads into itself after it has rendered (backend/ui/pages.py).
FRAGMENTS = {"project.html": ["_project_panels.html"]}
STATIC_ID = re.compile(r'\bid="([^"{}]+)"')


def static_ids(template: Path) -> list[str]:
    return STATIC_ID.findall(template.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "page", sorted(path.name for path in TEMPLATES.glob("*.html") if not path.name.startswith(("_", "base")))
)
def test_a_pages_ids_are_unique(page: str) -> None:
    fragments = [TEMPLATES / name for name in FRAGMENTS.get(page, [])]
    parts = [TEMPLATES / page, TEMPLATES / "base.html", *fragments]
    ids = Counter(element_id for part in parts for element_id in static_ids(part))
    assert ids, f"{page}: no ids found (the pattern no longer matches the templates?)"
    assert {element_id for element_id, count in ids.items() if count > 1} == set()
