"""The demo page in a real headless chromium, against capture + the whole gateway.

The page lists the signed-in user's team's open issues (first load through the
streaming bootstrap, then live), shows a new issue written to Postgres, drops
an issue that moves to another team, and shows an opened issue's comments,
live too. After a write load it holds exactly what Postgres's SELECT returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis

from examples.issue_tracker import Writer
from pgsift.middleware.feed import keys
from tests.examples.browser import Chromium, find_chromium
from tests.examples.stack import EXAMPLE_CONFIG, eventually, gateway, seed_app
from tests.middleware.capture.processes import capturing

OPEN = "status NOT IN ('done', 'canceled')"
IDS_OF = "[...document.querySelectorAll('{}')].map(tr => Number(tr.dataset.issueId))"
ROW_IDS = IDS_OF.format("#issues tbody tr")
CHANGED = IDS_OF.format("#issues tbody tr.changed")  # rows highlighted as just changed
WRITER_STEPS = 5


@dataclass
class Demo:
    url: str
    database_url: str
    team: int
    other_team: int


@pytest.fixture
def demo(database_url: str, redis_url: str) -> Iterator[Demo]:
    user, other = seed_app(database_url, issues=800, seed=9)
    with capturing(database_url, redis_url, config=EXAMPLE_CONFIG), gateway(
        database_url, redis_url
    ) as url:
        # The app is in use: the feed holds transactions when the page first loads.
        with Writer(database_url, 1) as writer:
            writer.run(rate=None, steps=WRITER_STEPS)
        feed = redis.Redis.from_url(redis_url)
        eventually(lambda: feed.xlen(keys.feed_stream(keys.database_of(database_url))) > 0,
                   "the writes reached the feed")
        feed.close()
        yield Demo(url, database_url, user.team_ids[0], other)


@pytest.fixture
def page() -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.fail("chromium is not installed; .ci/setup installs it (apt-get install chromium)")
    with Chromium() as browser:
        yield browser


def open_issue_ids(database_url: str, team: int) -> set[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT id FROM issues WHERE team_id = %s AND {OPEN}", [team])
        return {row[0] for row in rows}


def test_the_page_follows_the_database(demo: Demo, page: Chromium) -> None:
    page.navigate(demo.url + "/")
    page.wait_for("document.querySelector('#status').dataset.state === 'live'", "live")
    assert int(page.evaluate("document.querySelector('#team').value")) == demo.team
    expected = open_issue_ids(demo.database_url, demo.team)
    page.wait_for(f"{ROW_IDS}.length === {len(expected)}", "the team's open issues")
    assert set(page.evaluate(ROW_IDS)) == expected
    # The first load came through the streaming bootstrap.
    assert page.evaluate("document.body.dataset.loadedBy") == "bootstrap"
    # The loaded rows are not highlighted; only the writer's last transactions, if they
    # arrived live after the first load, may be.
    assert page.evaluate(f"{CHANGED}.length") <= WRITER_STEPS

    with psycopg.connect(demo.database_url, autocommit=True) as conn:
        # A new issue shows up.
        started = time.monotonic()
        row = conn.execute(
            "WITH n AS (UPDATE teams SET issue_count = issue_count + 1 WHERE id = %s"
            " RETURNING issue_count)"
            " INSERT INTO issues (team_id, number, title, status, priority)"
            " SELECT %s, issue_count, 'Written by the browser test', 'todo', 1 FROM n"
            " RETURNING id",
            [demo.team, demo.team],
        ).fetchone()
        assert row is not None
        new_id = row[0]
        # It arrives highlighted (the class stays until the list is drawn after the fade).
        page.wait_for(f"{CHANGED}.includes({new_id})", "the new issue, highlighted")
        print(f"write to page: {time.monotonic() - started:.3f} s")
        title = page.evaluate(
            f"document.querySelector('tr[data-issue-id=\"{new_id}\"] td.title').textContent"
        )
        assert title == "Written by the browser test"
        assert page.evaluate(
            f"getComputedStyle(document.querySelector('tr[data-issue-id=\"{new_id}\"]'))"
            ".animationName"
        ) == "changed"

        # An edited issue changes in place, highlighted too.
        edited = max(expected)
        conn.execute("UPDATE issues SET title = 'Edited by the browser test' WHERE id = %s",
                     [edited])
        page.wait_for(
            f"document.querySelector('tr[data-issue-id=\"{edited}\"] td.title')"
            f".textContent === 'Edited by the browser test' && {CHANGED}.includes({edited})",
            "the edited title, highlighted",
        )

        # An issue moving to another team disappears.
        moved = min(expected)
        conn.execute(
            "UPDATE issues SET team_id = %s, number = -id WHERE id = %s", [demo.other_team, moved]
        )
        page.wait_for(f"!{ROW_IDS}.includes({moved})", "the moved issue is gone")

        # Opening an issue shows its comments, and a new comment arrives live.
        found = conn.execute(
            f"SELECT i.id, count(c.id) FROM issues i JOIN comments c ON c.issue_id = i.id"
            f" WHERE i.team_id = %s AND i.{OPEN} GROUP BY i.id ORDER BY i.id LIMIT 1",
            [demo.team],
        ).fetchone()
        assert found is not None
        issue, comments = found
        page.evaluate(f"document.querySelector('tr[data-issue-id=\"{issue}\"]').click()")
        page.wait_for(f"document.querySelectorAll('#comments li').length === {comments}",
                      "the issue's comments")
        bodies = {body for (body,) in conn.execute(
            "SELECT body FROM comments WHERE issue_id = %s", [issue])}
        shown = page.evaluate(
            "[...document.querySelectorAll('#comments li p')].map(p => p.textContent)"
        )
        assert set(shown) == bodies
        conn.execute(
            "INSERT INTO comments (issue_id, team_id, author_id, body)"
            " VALUES (%s, %s, NULL, 'A comment from the browser test')",
            [issue, demo.team],
        )
        page.wait_for(
            "[...document.querySelectorAll('#comments li p')]"
            ".some(p => p.textContent === 'A comment from the browser test')",
            "the new comment",
        )

    # Under a write load, the page converges on Postgres's answer.
    with Writer(demo.database_url, 21) as writer:
        load = threading.Thread(target=writer.run, kwargs={"rate": 100.0, "steps": 300})
        load.start()
        load.join()
    expected = open_issue_ids(demo.database_url, demo.team)
    page.wait_for(
        f"(ids => ids.length === {len(expected)} && "
        f"ids.every(id => {sorted(expected)}.includes(id)))({ROW_IDS})",
        "the page equals Postgres after the load",
    )
    assert page.console == []


ROWS_TITLED = (
    "[...document.querySelectorAll('#issues tbody tr')]"
    ".filter(tr => tr.querySelector('td.title').textContent === {title!r})"
    ".map(tr => ({{id: tr.dataset.issueId, pending: tr.classList.contains('pending'),"
    " status: tr.querySelector('td.status select').value}}))"
)
WRITE_STATUS = "document.querySelector('#writes li[data-mutation-id=\"{id}\"]')?.dataset.status"


def test_writes_from_the_page_show_at_once_and_then_their_confirmation(
    demo: Demo, page: Chromium
) -> None:
    """A new issue and status changes made on the page: the change is on the page in the
    same task as the click (before any answer can come back), marked pending; the
    `sync` message that confirms it brings the real row and the page says "saved"."""
    page.navigate(demo.url + "/")
    page.wait_for("document.querySelector('#status').dataset.state === 'live'", "live")
    title = "Made in the browser"
    rows = page.evaluate(
        f"document.querySelector('#new-title').value = {title!r};"
        "document.querySelector('#new-issue').requestSubmit();"
        + ROWS_TITLED.format(title=title)
    )
    assert len(rows) == 1 and rows[0]["id"].startswith("tmp-") and rows[0]["pending"]
    assert page.evaluate(WRITE_STATUS.format(id=1)) in ("pending", "sent")
    page.wait_for(f"{WRITE_STATUS.format(id=1)} === 'confirmed'", "the creation confirmed")
    [row] = page.evaluate(ROWS_TITLED.format(title=title))
    assert not row["pending"] and not row["id"].startswith("tmp-")
    with psycopg.connect(demo.database_url) as conn:
        assert conn.execute(
            "SELECT id::text, team_id, status FROM issues WHERE title = %s", [title]
        ).fetchall() == [(row["id"], demo.team, "backlog")]

    # A status change shows at once, then is confirmed; Postgres has it.
    change = (
        "(select => {{ select.value = {status!r};"
        " select.dispatchEvent(new Event('change')); }})"
        f"(document.querySelector('tr[data-issue-id=\"{row['id']}\"] td.status select'));"
    )
    [changed] = page.evaluate(change.format(status="in_review") + ROWS_TITLED.format(title=title))
    assert (changed["status"], changed["pending"]) == ("in_review", True)
    page.wait_for(f"{WRITE_STATUS.format(id=2)} === 'confirmed'", "the status confirmed")
    assert page.evaluate(ROWS_TITLED.format(title=title)) == [
        {"id": row["id"], "pending": False, "status": "in_review"}]
    # Done: the issue leaves the list of open issues at once.
    assert page.evaluate(change.format(status="done") + ROWS_TITLED.format(title=title)) == []
    page.wait_for(f"{WRITE_STATUS.format(id=3)} === 'confirmed'", "done confirmed")
    assert page.evaluate(ROWS_TITLED.format(title=title)) == []
    with psycopg.connect(demo.database_url) as conn:
        assert conn.execute(
            "SELECT status FROM issues WHERE title = %s", [title]).fetchall() == [("done",)]

    # A refused one: shown at once, then gone, with the server's reason.
    page.evaluate("document.querySelector('#new-title').value = '   ';"
                  "document.querySelector('#new-issue').requestSubmit()")
    page.wait_for(f"{WRITE_STATUS.format(id=4)} === 'refused'", "the refusal")
    assert "title must be a non-empty string" in page.evaluate(
        "document.querySelector('#writes li[data-mutation-id=\"4\"]').textContent")
    assert page.evaluate(
        "[...document.querySelectorAll('#issues tbody tr')]"
        ".filter(tr => tr.dataset.issueId.startsWith('tmp-')).length") == 0
    assert page.console == [
        "mutation 4 refused: title must be a non-empty string of at most 200 characters"]
