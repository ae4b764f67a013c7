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
    user: int


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
        yield Demo(url, database_url, user.team_ids[0], other, user.id)


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


MEMBER_OPEN = (
    f"SELECT id FROM issues WHERE {OPEN} AND team_id IN"
    " (SELECT team_id FROM team_members WHERE user_id = %s)"
)
TEAM_OPTIONS = "[...document.querySelectorAll('#team option')].map(o => o.value)"
PICK_TEAM = ("(select => {{ select.value = {value!r};"
             " select.dispatchEvent(new Event('change')); }})(document.querySelector('#team'))")


def member_open_issue_ids(database_url: str, user: int) -> set[int]:
    """The oracle of "All my teams": the open issues of the user's teams, by the same
    subquery as the policy, as Postgres answers it now."""
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute(MEMBER_OPEN, [user])}


def shows_exactly(ids: set[int]) -> str:
    return (f"(ids => ids.length === {len(ids)} && "
            f"ids.every(id => {sorted(ids)}.includes(id)))({ROW_IDS})")


def test_a_new_membership_brings_the_teams_issues_live(demo: Demo, page: Chromium) -> None:
    """The policy reads team_members: a membership inserted in Postgres moves the team's
    open issues into "All my teams" and the team into the picker, without a new token
    or a reload; deleting it moves them out again."""
    page.navigate(demo.url + "/")
    page.wait_for("document.querySelector('#status').dataset.state === 'live'", "live")
    user = int(page.evaluate("document.querySelector('#user').value"))
    assert user == demo.user
    page.evaluate(PICK_TEAM.format(value="all"))
    page.wait_for("document.querySelector('#status').dataset.state === 'live'", "all teams live")
    before = member_open_issue_ids(demo.database_url, user)
    page.wait_for(shows_exactly(before), "the open issues of the user's teams")
    other = open_issue_ids(demo.database_url, demo.other_team)
    assert other and not other & before
    assert str(demo.other_team) not in page.evaluate(TEAM_OPTIONS)

    with psycopg.connect(demo.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO team_members (team_id, user_id) VALUES (%s, %s)",
                     [demo.other_team, user])
        joined = member_open_issue_ids(demo.database_url, user)
        assert joined == before | other
        page.wait_for(shows_exactly(joined), "the new team's issues, live")
        page.wait_for(f"{TEAM_OPTIONS}.includes('{demo.other_team}')", "the team in the picker")
        # They arrived live (highlighted), into the same subscription: no reload.
        assert set(page.evaluate(CHANGED)) >= other
        assert page.evaluate("document.body.dataset.loadedBy") == "bootstrap"
        # Their identifiers carry the new team's key, loaded through the batch loader.
        key = conn.execute("SELECT key FROM teams WHERE id = %s", [demo.other_team]).fetchone()
        assert key is not None
        some = min(other)
        page.wait_for(
            f"document.querySelector('tr[data-issue-id=\"{some}\"] td.identifier')"
            f".textContent.startsWith('{key[0]}-')", "the new team's key")

        conn.execute("DELETE FROM team_members WHERE team_id = %s AND user_id = %s",
                     [demo.other_team, user])
        page.wait_for(shows_exactly(member_open_issue_ids(demo.database_url, user)),
                      "the team's issues gone again")
        page.wait_for(f"!{TEAM_OPTIONS}.includes('{demo.other_team}')", "the team gone")

        # Viewing the team itself when the membership goes: its rows leave, and the page
        # goes back to all of the user's teams.
        conn.execute("INSERT INTO team_members (team_id, user_id) VALUES (%s, %s)",
                     [demo.other_team, user])
        page.wait_for(f"{TEAM_OPTIONS}.includes('{demo.other_team}')", "the team back")
        page.evaluate(PICK_TEAM.format(value=str(demo.other_team)))
        page.wait_for(shows_exactly(open_issue_ids(demo.database_url, demo.other_team)),
                      "the team's own list")
        conn.execute("DELETE FROM team_members WHERE team_id = %s AND user_id = %s",
                     [demo.other_team, user])
        page.wait_for("document.querySelector('#team').value === 'all'", "back to all teams")
        page.wait_for(shows_exactly(member_open_issue_ids(demo.database_url, user)),
                      "all of the user's teams, without the one left")
    assert page.console == []
