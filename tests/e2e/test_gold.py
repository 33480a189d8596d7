"""Gold questions in chromium: a lead adds a gold example through the project page's panel, sees it
listed and deletes it; the annotators page shows who is flagged by their answers to gold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.db import unit_of_work
from backend.models import Project, Role, User
from tests.api.factories import (
    make_examples,
    make_gold_queries,
    make_project,
    make_round,
    make_user,
)
from tests.api.platform_support import add_answer
from tests.e2e.conftest import BROWSER_TESTS, Server, sign_in, wait_for_js

pytestmark = BROWSER_TESTS

KNOWN = 40  # the gold queries' known σ index (σ 0.40)


def test_the_project_page_adds_lists_and_deletes_a_gold_example(server: Server, page: Any) -> None:
    with server.database() as sessions:
        with unit_of_work(sessions) as session:
            lead = session.scalars(select(User).where(User.username == "lead1")).one()
            project = make_project(session, lead, gold_rate=0.1, gold_max_error=8.0)
            example_id = make_examples(session, project, 2)[1].id
            project_id = project.id

        sign_in(page, server, "lead1")
        page.goto(f"{server.base_url}/projects/{project_id}")
        wait_for_js(
            page, "document.querySelector('#gold-table')?.textContent.includes('No gold example yet')"
        )
        config = page.text_content("#gold-config")
        assert "10%" in config and "σ 0.08" in config and "kept in" in config

        page.fill("#g-example", str(example_id))
        page.fill("#g-sigma", "0.95")
        page.click("#add-gold")
        wait_for_js(page, "document.querySelector('#gold-form .field.invalid')")
        assert "0.90" in page.text_content("#gold-form [data-field=sigma_index] .error")

        page.fill("#g-sigma", "0.37")
        page.click("#add-gold")
        row = f"#gold-table tr[data-example-id='{example_id}']"
        wait_for_js(page, f'document.querySelector("{row}") !== null')
        cells = page.eval_on_selector_all(f"{row} td", "cells => cells.map(cell => cell.textContent)")
        assert cells[:3] == [str(example_id), "0.37", "typed"]

        page.fill("#g-example", str(example_id))  # already gold: the API's 409, shown on the form
        page.fill("#g-sigma", "0.2")
        page.click("#add-gold")
        wait_for_js(
            page, "document.querySelector('#gold-form .field.invalid, #gold-form-error:not([hidden])')"
        )
        assert "already gold" in page.text_content("#gold-form")

        page.click("#gold-from-agreement")  # no round yet: nothing agreed
        wait_for_js(page, "document.getElementById('gold-agreement-status').textContent.includes('Added')")
        assert page.text_content("#gold-agreement-status") == "Added 0, 0 already gold."

        page.click(f"{row} button.danger")
        wait_for_js(
            page, "document.querySelector('#gold-table')?.textContent.includes('No gold example yet')"
        )

        # The settings form: a rate over 50 % is the API's 422 on its field; a good one is stored.
        page.fill("#g-rate", "60")
        page.click("#save-gold-settings")
        wait_for_js(page, "document.querySelector('#gold-settings-form .field.invalid')")
        assert "0.5" in page.text_content("#gold-settings-form [data-field=gold_rate] .error")
        page.fill("#g-rate", "20")
        page.fill("#g-max-error", "0.12")
        page.check("#g-exclude")
        page.click("#save-gold-settings")
        wait_for_js(page, "document.getElementById('gold-settings-status').textContent === 'Saved.'")
        config = page.text_content("#gold-config")
        assert "20%" in config and "σ 0.12" in config and "left out of" in config
        with unit_of_work(sessions) as session:
            stored = session.get(Project, project_id)
            assert stored is not None
            assert (stored.config.gold_rate, stored.config.gold_max_error, stored.config.exclude_flagged) == (
                0.2,
                12.0,
                True,
            )


def test_the_annotators_page_flags_who_answers_gold_badly(server: Server, page: Any) -> None:
    with server.database() as sessions:
        with unit_of_work(sessions) as session:
            lead = session.scalars(select(User).where(User.username == "lead1")).one()
            careful, careless = make_user(session, Role.annotator), make_user(session, Role.annotator)
            project = make_project(session, lead, gold_max_error=10.0, gold_min_answers=3)
            queries = make_gold_queries(
                session, make_round(session, project), make_examples(session, project, 3), KNOWN
            )
            for query, offset in zip(queries, (0, 2, 1), strict=True):
                add_answer(session, query, careful, KNOWN + offset)
            for query, offset in zip(queries, (20, 15, 12), strict=True):
                add_answer(session, query, careless, KNOWN + offset)
            names = careful.username, careless.username

        sign_in(page, server, "lead1")
        page.goto(f"{server.base_url}/annotators")
        for name in names:
            wait_for_js(
                page, f"document.querySelector('#annotators-table tr[data-username=\"{name}\"]') !== null"
            )

        def cells(name: str) -> list[str]:
            return list(
                page.eval_on_selector_all(
                    f"#annotators-table tr[data-username='{name}'] td",
                    "cells => cells.map(cell => cell.textContent)",
                )
            )

        careful_row, careless_row = cells(names[0]), cells(names[1])
        assert careful_row[0] == names[0]
        assert careful_row[4:] == ["3", "0.01 (leans +0.01)"]
        assert careless_row[4:] == ["3", "0.16 (leans +0.16)"]
        assert page.is_visible(f"#annotators-table tr[data-username='{names[1]}'] .badge.flagged")
        assert page.query_selector(f"#annotators-table tr[data-username='{names[0]}'] .badge.flagged") is None
        assert (
            page.text_content(f"#annotators-table tr[data-username='{names[1]}'] td") == f"{names[1]} flagged"
        )
