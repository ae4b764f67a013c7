"""A deterministic data set of any size for the issue tracker, loaded fast (COPY).

Everything derives from the issue count and the seed: the same arguments give
the same rows, byte for byte, whatever the machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from examples.issue_tracker import words
from examples.issue_tracker.schema import TABLES

# Every timestamp is relative to this instant, not to now(): determinism.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_S = 365 * 24 * 3600
STATUSES = ("backlog", "todo", "in_progress", "in_review", "done", "canceled")
STATUS_WEIGHTS = (20, 20, 15, 5, 35, 5)
ESTIMATES = ("1", "2", "3", "5", "8", "0.5", "13")
# Issues are generated and loaded in chunks so memory stays flat at 1,000,000,
# and progress is reported per chunk (chunk boundaries do not change the rows):
# small enough that the demo's 10,000 issues show a rate and an ETA on the way.
CHUNK = 1_000
NULL = "\\N"


@dataclass(frozen=True)
class SeedSize:
    """How many rows of each kind a seed of `issues` issues holds."""

    issues: int
    teams: int
    users: int
    labels_per_team: int
    comments_per_issue: float

    @classmethod
    def for_issues(cls, issues: int, *, comments_per_issue: float = 2.0) -> SeedSize:
        if issues < 0:
            raise ValueError(f"issues must be >= 0, got {issues}")
        if comments_per_issue < 0:
            raise ValueError(f"comments_per_issue must be >= 0, got {comments_per_issue}")
        return cls(
            issues=issues,
            teams=min(max(issues // 2_000, 5), 500),
            users=min(max(issues // 50, 50), 20_000),
            labels_per_team=len(words.LABELS),
            comments_per_issue=comments_per_issue,
        )


@dataclass(frozen=True)
class SeedResult:
    """Row counts loaded per table, and the time it took."""

    counts: dict[str, int]
    seconds: float


def seed(
    conn: psycopg.Connection[Any],
    *,
    issues: int = 10_000,
    seed: int = 1,
    comments_per_issue: float = 2.0,
    on_progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Load a data set into the (empty) tables of `apply_schema`, in one transaction.

    `on_progress` is called with the number of issues loaded so far after each chunk.
    """
    size = SeedSize.for_issues(issues, comments_per_issue=comments_per_issue)
    started = time.perf_counter()
    with conn.transaction():
        if _scalar(conn, "SELECT EXISTS (SELECT FROM teams)"):
            raise ValueError("the issue tracker already holds data; seed an empty schema")
        _Generator(conn, size, random.Random(seed)).load(on_progress)
        for table in ("teams", "users", "issues", "comments", "labels"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        conn.execute(
            "UPDATE teams t SET issue_count = coalesce("
            "(SELECT max(number) FROM issues i WHERE i.team_id = t.id), 0)"
        )
        counts = {table: int(_scalar(conn, f"SELECT count(*) FROM {table}")) for table in TABLES}
    conn.execute("ANALYZE")
    return SeedResult(counts=counts, seconds=time.perf_counter() - started)


class _Generator:
    """Generates rows in a fixed order from one random stream and COPYs them in."""

    def __init__(self, conn: psycopg.Connection[Any], size: SeedSize, rng: random.Random):
        self.conn = conn
        self.size = size
        self.rng = rng
        self.members: list[list[int]] = [[] for _ in range(size.teams + 1)]
        self.numbers = [0] * (size.teams + 1)
        self.comment_id = 0

    def load(self, on_progress: Callable[[int], None] | None) -> None:
        self._teams_users_labels()
        for first in range(1, self.size.issues + 1, CHUNK):
            stop = min(first + CHUNK, self.size.issues + 1)
            self._issues(first, stop)
            if on_progress is not None:
                on_progress(stop - 1)

    def _copy(self, table: str, columns: str, lines: list[str]) -> None:
        if not lines:
            return
        with self.conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")

    def _teams_users_labels(self) -> None:
        rng, size = self.rng, self.size
        teams, users, members, labels = [], [], [], []
        for team in range(1, size.teams + 1):
            base = words.TEAM_NAMES[(team - 1) % len(words.TEAM_NAMES)]
            round_ = (team - 1) // len(words.TEAM_NAMES)
            name = base if round_ == 0 else f"{base} {round_ + 1}"
            key = base[:3].upper() + ("" if round_ == 0 else str(round_ + 1))
            created = _ts(EPOCH - timedelta(seconds=2 * YEAR_S + rng.randrange(YEAR_S)))
            teams.append(f"{team}\t{key}\t{name}\t{created}")
            for j, (label, color) in enumerate(words.LABELS[: size.labels_per_team]):
                label_id = (team - 1) * size.labels_per_team + j + 1
                labels.append(f"{label_id}\t{team}\t{label}\t{color}")
        for user in range(1, size.users + 1):
            name = words.person(rng)
            email = f"{name.lower().replace(' ', '.').replace('-', '')}.{user}@example.com"
            active = "f" if rng.random() < 0.03 else "t"
            created = _ts(EPOCH - timedelta(seconds=YEAR_S + rng.randrange(YEAR_S)))
            users.append(f"{user}\t{email}\t{name}\t{active}\t{created}")
            # The first users cover every team once, so that no team is without members.
            first = (user - 1) % size.teams + 1
            others = rng.sample(range(1, size.teams + 1), rng.randint(0, min(2, size.teams - 1)))
            for team in dict.fromkeys([first, *others]):
                role = "admin" if rng.random() < 0.1 else "member"
                members.append(f"{team}\t{user}\t{role}\t{created}")
                self.members[team].append(user)
        self._copy("teams", "id, key, name, created_at", teams)
        self._copy("users", "id, email, name, active, created_at", users)
        self._copy("team_members", "team_id, user_id, role, joined_at", members)
        self._copy("labels", "id, team_id, name, color", labels)

    def _issues(self, first: int, stop: int) -> None:
        rng, size = self.rng, self.size
        issues, comments, issue_labels = [], [], []
        max_comments = round(2 * size.comments_per_issue)
        for issue in range(first, stop):
            team = rng.randint(1, size.teams)
            self.numbers[team] += 1
            people = self.members[team]
            creator = rng.choice(people)
            assignee = str(rng.choice(people)) if rng.random() < 0.8 else NULL
            status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            estimate = rng.choice(ESTIMATES) if rng.random() < 0.6 else NULL
            tags = "{" + ",".join(rng.sample(words.TAGS, rng.randint(0, 2))) + "}"
            age = rng.randrange(YEAR_S)
            created = EPOCH - timedelta(seconds=age)
            updated = created + timedelta(seconds=rng.randrange(age + 1))
            due = (EPOCH + timedelta(days=rng.randint(-60, 120))).date().isoformat() \
                if rng.random() < 0.3 else NULL
            description = words.paragraph(rng) if rng.random() < 0.7 else NULL
            issues.append(
                f"{issue}\t{team}\t{self.numbers[team]}\t{creator}\t{assignee}\t"
                f"{words.title(rng)}\t{description}\t{status}\t{rng.randint(0, 4)}\t"
                f"{estimate}\t{tags}\t{due}\t{_ts(created)}\t{_ts(updated)}"
            )
            for _ in range(rng.randint(0, max_comments) if max_comments else 0):
                self.comment_id += 1
                at = created + timedelta(seconds=rng.randrange(age + 1))
                comments.append(
                    f"{self.comment_id}\t{issue}\t{team}\t{rng.choice(people)}\t"
                    f"{words.paragraph(rng, 2)}\t{_ts(at)}"
                )
            for label in rng.sample(range(size.labels_per_team), rng.randint(0, 2)):
                label_id = (team - 1) * size.labels_per_team + label + 1
                issue_labels.append(f"{issue}\t{label_id}\t{_ts(created)}")
        self._copy(
            "issues",
            "id, team_id, number, creator_id, assignee_id, title, description, status, "
            "priority, estimate, tags, due, created_at, updated_at",
            issues,
        )
        self._copy("comments", "id, issue_id, team_id, author_id, body, created_at", comments)
        self._copy("issue_labels", "issue_id, label_id, added_at", issue_labels)


def _scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql.encode()).fetchone()
    return None if row is None else row[0]


def _ts(value: datetime) -> str:
    return value.isoformat()
