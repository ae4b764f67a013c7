"""The issue tracker's mutators: what its clients may write through pgsift.

Named in this folder's `pgsift.toml` (`[mutators]`). Each runs in the transaction
that also advances the client's mutation id; it checks its args and, against
`team_members`, that the caller (claim `user_id`: see `auth`) is a member of
the team, and refuses with a message the client shows to its user — the app's
own rules, not pgsift's.

    create_issue {team_id, title, description?, priority?}   a new issue in one of your teams
    set_status   {issue_id, status}                         move an issue of your teams
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from examples.issue_tracker.dataset import STATUSES
from pgsift.middleware.mutations import Refused

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000


def create_issue(
    conn: psycopg.Connection[Any], args: Mapping[str, Any], claims: Mapping[str, Any]
) -> None:
    """A new issue in the caller's team `team_id`, numbered by the team's counter."""
    team = _integer(args, "team_id")
    title = _text(args, "title", MAX_TITLE)
    description = _text(args, "description", MAX_DESCRIPTION, required=False)
    priority = args.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 4:
        raise Refused("priority must be an integer from 0 to 4")
    if not _member(conn, claims, team):
        raise Refused(f"you are not a member of team {team}")
    # The counter row is the lock that keeps numbers unique per team.
    counter = conn.execute(
        "UPDATE teams SET issue_count = issue_count + 1 WHERE id = %s RETURNING issue_count",
        [team],
    ).fetchone()
    if counter is None:
        raise Refused(f"there is no team {team}")
    conn.execute(
        "INSERT INTO issues (team_id, number, creator_id, title, description, priority)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [team, counter[0], claims.get("user_id"), title, description, priority],
    )


def set_status(
    conn: psycopg.Connection[Any], args: Mapping[str, Any], claims: Mapping[str, Any]
) -> None:
    """Change the status of issue `issue_id`, which must belong to one of the caller's teams."""
    issue = _integer(args, "issue_id")
    status = args.get("status")
    if status not in STATUSES:
        raise Refused(f"status must be one of {', '.join(STATUSES)}")
    found = conn.execute(
        "SELECT team_id FROM issues WHERE id = %s FOR UPDATE", [issue]
    ).fetchone()
    # One message for "no such issue" and "not yours": no probing of other teams' ids.
    if found is None or not _member(conn, claims, found[0]):
        raise Refused(f"there is no issue {issue} in your teams")
    conn.execute(
        "UPDATE issues SET status = %s, updated_at = now() WHERE id = %s", [status, issue]
    )


def _member(conn: psycopg.Connection[Any], claims: Mapping[str, Any], team: int) -> bool:
    """Whether the caller is a member of `team` now. FOR KEY SHARE: the membership
    cannot be deleted before this transaction commits, so no write lands in a team
    its author had already left."""
    user = claims.get("user_id")
    if isinstance(user, bool) or not isinstance(user, int):
        return False
    found = conn.execute(
        "SELECT FROM team_members WHERE team_id = %s AND user_id = %s FOR KEY SHARE",
        [team, user],
    ).fetchone()
    return found is not None


def _integer(args: Mapping[str, Any], name: str) -> int:
    """A positive bigint, as a JSON number or in its wire form (a string of digits)."""
    value = args.get(name)
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise Refused(f"{name} must be a positive integer")
    return value


def _text(
    args: Mapping[str, Any], name: str, max_length: int, *, required: bool = True
) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise Refused(f"{name} must be a non-empty string of at most {max_length} characters")
    return value
