"""Who annotates, in chromium: a lead keeps a project to one chosen annotator from the project page,
the choice is stored and shown again on reload, and opening it to everyone again keeps the list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.db import unit_of_work
from backend.models import Project, ProjectMember, User
from tests.api.factories import make_project
from tests.e2e.conftest import BROWSER_TESTS, Server, sign_in, wait_for_js

pytestmark = BROWSER_TESTS


def stored(sessions: Any, project_id: int) -> tuple[bool, set[str]]:
    with unit_of_work(sessions) as session:
        project = session.get(Project, project_id)
        assert project is not None
        names = session.scalars(
            select(User.username)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id)
        )
        return project.all_annotators, set(names)


def test_a_lead_keeps_a_project_to_chosen_annotators(server: Server, page: Any) -> None:
    with server.database() as sessions:
        with unit_of_work(sessions) as session:
            lead = session.scalars(select(User).where(User.username == "lead1")).one()
            project_id = make_project(session, lead).id

        sign_in(page, server, "lead1")
        page.goto(f"{server.base_url}/projects/{project_id}")
        ann1 = "#members-list label:has-text('ann1') input"
        wait_for_js(page, "document.querySelector('#members-list input[name=member]') !== null")
        assert page.is_checked("#m-all")
        assert not page.is_checked(ann1)

        page.check("#m-listed")  # nobody ticked: refused on the page, nothing sent
        page.click("#save-members")
        wait_for_js(page, "!document.getElementById('members-error').hidden")
        assert "at least one annotator" in page.text_content("#members-error")
        assert stored(sessions, project_id) == (True, set())

        page.check(ann1)
        page.click("#save-members")
        wait_for_js(page, "document.getElementById('members-status').textContent.startsWith('Saved')")
        assert page.text_content("#members-status") == "Saved: 1 annotator takes this project's tasks."
        assert stored(sessions, project_id) == (False, {"ann1"})

        page.reload()
        wait_for_js(page, "document.querySelector('#members-list input[name=member]') !== null")
        assert page.is_checked("#m-listed") and page.is_checked(ann1)
        assert not page.is_checked("#members-list label:has-text('ann2') input")

        page.check("#m-all")  # open to all again: the list is kept for next time
        page.click("#save-members")
        wait_for_js(page, "document.getElementById('members-status').textContent.includes('every annotator')")
        assert stored(sessions, project_id) == (True, {"ann1"})
