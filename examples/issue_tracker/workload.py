"""The issue tracker's users at work: one transaction per step, at a bounded rate.

Creates and edits issues, moves them between teams and states, reassigns them,
comments, labels and deletes — the writes an ordinary app does, in ordinary
transactions (a move to another team also moves its comments and relabels it).
It stops by itself after `duration` seconds.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any

import psycopg
from psycopg import errors

from examples.issue_tracker import words
from examples.issue_tracker.dataset import ESTIMATES, STATUSES

# Relative frequency of each action; the names are the `Step.action` values.
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "create_issue": 18,
    "edit_issue": 16,
    "change_status": 18,
    "reassign": 10,
    "move_team": 6,
    "comment": 16,
    "edit_comment": 3,
    "delete_comment": 2,
    "toggle_label": 5,
    "bulk_status": 2,
    "delete_issue": 4,
}
# Conflicts between concurrent writers (or with the app's other users) are
# retried like an app would; anything else is a bug and propagates.
RETRIED = (errors.DeadlockDetected, errors.SerializationFailure, errors.ForeignKeyViolation)
MAX_ATTEMPTS = 5
PROBES = 12  # random ids tried before an action gives up on finding a row


@dataclass(frozen=True)
class Step:
    """What one step did: its action and the issues it touched (empty if none)."""

    action: str
    issue_ids: tuple[int, ...]


@dataclass(frozen=True)
class WriterStats:
    """Totals of a `Writer.run`."""

    steps: int
    seconds: float
    actions: dict[str, int]
    retries: int


class Writer:
    """Random app-like writes; `step()` commits one transaction, `run()` paces many."""

    def __init__(
        self,
        conn_or_url: psycopg.Connection[Any] | str,
        rng: random.Random | int | None = None,
        *,
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    ) -> None:
        if isinstance(conn_or_url, str):
            self.conn: psycopg.Connection[Any] = psycopg.connect(conn_or_url, autocommit=True)
            self._owns_conn = True
        else:
            self.conn = conn_or_url
            self._owns_conn = False
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        unknown = set(weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown writer action(s): {', '.join(sorted(unknown))}")
        self._actions: list[Callable[[], tuple[int, ...] | None]] = [
            getattr(self, f"_{name}") for name in weights
        ]
        self._names = list(weights)
        self._weights = list(weights.values())
        self.retries = 0
        self._load_people()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        if self._owns_conn:
            self.conn.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- driving -----------------------------------------------------------

    def step(self) -> Step:
        """Commit one random transaction; an action with nothing to act on creates an issue."""
        index = self.rng.choices(range(len(self._names)), self._weights)[0]
        name, action = self._names[index], self._actions[index]
        touched = self._attempt(action)
        if touched is None:
            name, touched = "create_issue", self._attempt(self._create_issue)
        return Step(name, touched or ())

    def run(
        self, rate: float | None = 20.0, duration: float = 60.0, *, steps: int | None = None
    ) -> WriterStats:
        """Step `rate` times a second (None: as fast as possible) until `duration` or `steps`."""
        started = time.monotonic()
        done: Counter[str] = Counter()
        count = 0
        retries_before = self.retries
        while (steps is None or count < steps) and time.monotonic() - started < duration:
            if rate:
                wait = started + count / rate - time.monotonic()
                if wait > 0:
                    left = duration - (time.monotonic() - started)
                    time.sleep(max(0.0, min(wait, left, 1.0)))
                    continue
            done[self.step().action] += 1
            count += 1
        return WriterStats(
            steps=count,
            seconds=time.monotonic() - started,
            actions=dict(done),
            retries=self.retries - retries_before,
        )

    def _attempt(self, action: Callable[[], tuple[int, ...] | None]) -> tuple[int, ...] | None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self.conn.transaction():
                    return action()
            except RETRIED:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                self.retries += 1
                self._load_people()
        raise AssertionError("unreachable")

    # -- what the app knows ------------------------------------------------

    def _load_people(self) -> None:
        members: dict[int, list[int]] = {}
        labels: dict[int, list[int]] = {}
        with self.conn.transaction():
            for team, user in self.conn.execute(
                "SELECT team_id, user_id FROM team_members ORDER BY team_id, user_id"
            ):
                members.setdefault(team, []).append(user)
            for team, label in self.conn.execute("SELECT team_id, id FROM labels ORDER BY id"):
                labels.setdefault(team, []).append(label)
            self.max_issue_id = self._max_id("issues")
            self.max_comment_id = self._max_id("comments")
        self.members = members
        self.teams = sorted(members)
        self.labels = labels

    def _max_id(self, table: str) -> int:
        row = self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def _lock_issue(self) -> tuple[int, int, str] | None:
        """A random existing issue, locked: (id, team_id, status), or None if none was found."""
        for _ in range(PROBES):
            if self.max_issue_id == 0:
                return None
            found = self.conn.execute(
                "SELECT id, team_id, status::text FROM issues WHERE id = %s FOR UPDATE",
                [self.rng.randint(1, self.max_issue_id)],
            ).fetchone()
            if found is not None:
                return int(found[0]), int(found[1]), str(found[2])
        return None

    def _member(self, team: int) -> int:
        return self.rng.choice(self.members[team])

    def _next_number(self, team: int) -> int:
        # The counter row is the lock that keeps numbers unique per team.
        row = self.conn.execute(
            "UPDATE teams SET issue_count = issue_count + 1 WHERE id = %s RETURNING issue_count",
            [team],
        ).fetchone()
        assert row is not None, f"team {team} vanished"
        return int(row[0])

    # -- actions: each runs inside a transaction, returns the issues touched --

    def _create_issue(self) -> tuple[int, ...] | None:
        if not self.teams:
            return None
        rng = self.rng
        team = rng.choice(self.teams)
        number = self._next_number(team)
        row = self.conn.execute(
            "INSERT INTO issues (team_id, number, creator_id, assignee_id, title, description,"
            " status, priority, estimate, tags, due)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, current_date + %s::int)"
            " RETURNING id",
            [
                team,
                number,
                self._member(team),
                self._member(team) if rng.random() < 0.6 else None,
                words.title(rng),
                words.paragraph(rng) if rng.random() < 0.7 else None,
                rng.choice(("backlog", "todo", "todo", "in_progress")),
                rng.randint(0, 4),
                Decimal(rng.choice(ESTIMATES)) if rng.random() < 0.5 else None,
                rng.sample(words.TAGS, rng.randint(0, 2)),
                rng.randint(1, 60) if rng.random() < 0.3 else None,
            ],
        ).fetchone()
        assert row is not None
        issue = int(row[0])
        self.max_issue_id = max(self.max_issue_id, issue)
        labels = self.labels.get(team, [])
        for label in rng.sample(labels, min(len(labels), rng.randint(0, 1))):
            self.conn.execute(
                "INSERT INTO issue_labels (issue_id, label_id) VALUES (%s, %s)", [issue, label]
            )
        return (issue,)

    def _edit_issue(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None:
            return None
        rng = self.rng
        edits: dict[str, Any] = {
            "title": words.title(rng),
            "description": words.paragraph(rng, 4) if rng.random() < 0.9 else None,
            "priority": rng.randint(0, 4),
            "estimate": Decimal(rng.choice(ESTIMATES)) if rng.random() < 0.7 else None,
            "tags": rng.sample(words.TAGS, rng.randint(0, 3)),
        }
        chosen = rng.sample(sorted(edits), rng.randint(1, 3))
        assignments = ", ".join(f"{column} = %s" for column in chosen)
        self.conn.execute(
            f"UPDATE issues SET {assignments}, updated_at = now() WHERE id = %s".encode(),
            [*(edits[column] for column in chosen), issue[0]],
        )
        return (issue[0],)

    def _change_status(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None:
            return None
        status = self.rng.choice([s for s in STATUSES if s != issue[2]])
        self.conn.execute(
            "UPDATE issues SET status = %s, updated_at = now() WHERE id = %s", [status, issue[0]]
        )
        return (issue[0],)

    def _reassign(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None:
            return None
        assignee = self._member(issue[1]) if self.rng.random() < 0.85 else None
        self.conn.execute(
            "UPDATE issues SET assignee_id = %s, updated_at = now() WHERE id = %s",
            [assignee, issue[0]],
        )
        return (issue[0],)

    def _move_team(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None or len(self.teams) < 2:
            return None
        issue_id, old_team, _ = issue
        team = self.rng.choice([t for t in self.teams if t != old_team])
        self.conn.execute(
            "UPDATE issues SET team_id = %s, number = %s, assignee_id = NULL, updated_at = now()"
            " WHERE id = %s",
            [team, self._next_number(team), issue_id],
        )
        self.conn.execute("UPDATE comments SET team_id = %s WHERE issue_id = %s", [team, issue_id])
        # Labels belong to teams: keep the ones the new team has a label of the same name for.
        self.conn.execute(
            "WITH old AS (DELETE FROM issue_labels il USING labels l"
            "  WHERE il.issue_id = %s AND l.id = il.label_id RETURNING l.name)"
            " INSERT INTO issue_labels (issue_id, label_id)"
            " SELECT %s, l.id FROM labels l JOIN old ON old.name = l.name WHERE l.team_id = %s",
            [issue_id, issue_id, team],
        )
        return (issue_id,)

    def _comment(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None:
            return None
        row = self.conn.execute(
            "INSERT INTO comments (issue_id, team_id, author_id, body) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            [issue[0], issue[1], self._member(issue[1]), words.paragraph(self.rng, 3)],
        ).fetchone()
        assert row is not None
        self.max_comment_id = max(self.max_comment_id, int(row[0]))
        return (issue[0],)

    def _lock_comment(self) -> tuple[int, int] | None:
        for _ in range(PROBES):
            if self.max_comment_id == 0:
                return None
            found = self.conn.execute(
                "SELECT id, issue_id FROM comments WHERE id = %s FOR UPDATE",
                [self.rng.randint(1, self.max_comment_id)],
            ).fetchone()
            if found is not None:
                return int(found[0]), int(found[1])
        return None

    def _edit_comment(self) -> tuple[int, ...] | None:
        comment = self._lock_comment()
        if comment is None:
            return None
        self.conn.execute(
            "UPDATE comments SET body = %s, edited_at = now() WHERE id = %s",
            [words.paragraph(self.rng, 3), comment[0]],
        )
        return (comment[1],)

    def _delete_comment(self) -> tuple[int, ...] | None:
        comment = self._lock_comment()
        if comment is None:
            return None
        self.conn.execute("DELETE FROM comments WHERE id = %s", [comment[0]])
        return (comment[1],)

    def _toggle_label(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None or not self.labels.get(issue[1]):
            return None
        label = self.rng.choice(self.labels[issue[1]])
        deleted = self.conn.execute(
            "DELETE FROM issue_labels WHERE issue_id = %s AND label_id = %s", [issue[0], label]
        )
        if deleted.rowcount == 0:
            self.conn.execute(
                "INSERT INTO issue_labels (issue_id, label_id) VALUES (%s, %s)", [issue[0], label]
            )
        return (issue[0],)

    def _bulk_status(self) -> tuple[int, ...] | None:
        # Triage: several issues change state in one transaction. Locking in id
        # order keeps concurrent writers from deadlocking on each other.
        wanted = self.rng.randint(2, 6)
        probes = sorted({self.rng.randint(1, max(self.max_issue_id, 1)) for _ in range(wanted)})
        rows = self.conn.execute(
            "SELECT id FROM issues WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [probes]
        ).fetchall()
        if not rows:
            return None
        ids = [int(row[0]) for row in rows]
        self.conn.execute(
            "UPDATE issues SET status = %s, updated_at = now() WHERE id = ANY(%s)",
            [self.rng.choice(STATUSES), ids],
        )
        return tuple(ids)

    def _delete_issue(self) -> tuple[int, ...] | None:
        issue = self._lock_issue()
        if issue is None:
            return None
        self.conn.execute("DELETE FROM issues WHERE id = %s", [issue[0]])
        return (issue[0],)
