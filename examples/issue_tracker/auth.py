"""The demo's sign-in: users (with the teams they are in now), and JWTs naming them.

Tokens are signed with DEMO_SECRET (the `[auth]` secret of this folder's
pgsift.toml). The claims are what pgsift's policies read: `auth.user_id`,
`auth.sub`. Team memberships are deliberately not in the token: the policies
read them from `team_members` (`team_id IN (SELECT team_id FROM team_members
WHERE user_id = auth.user_id)`), so a membership added or removed in Postgres
takes effect at once, for tokens already handed out too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
import psycopg

# Only for the demo: a real deployment sets its own secret (or a public key).
DEMO_SECRET = "pgsift-demo-secret-do-not-use-in-production"
DEMO_ALGORITHM = "HS256"
DEFAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class DemoUser:
    """A user of the issue tracker as the demo signs them in; `team_ids` are their
    memberships when they were read (for display: tokens do not carry them)."""

    id: int
    name: str
    email: str
    team_ids: tuple[int, ...]

    def claims(self) -> dict[str, Any]:
        """The token claims pgsift's policies see for this user."""
        return {"sub": str(self.id), "user_id": self.id, "name": self.name}


def demo_users(
    conn: psycopg.Connection[Any], *, limit: int = 10, team: int | None = None
) -> list[DemoUser]:
    """The first `limit` active users with at least one team (with `team`: members of
    that team), by id."""
    rows = conn.execute(
        "SELECT u.id, u.name, u.email, array_agg(m.team_id ORDER BY m.team_id)"
        " FROM users u JOIN team_members m ON m.user_id = u.id"
        " WHERE u.active GROUP BY u.id"
        " HAVING %(team)s::int IS NULL OR %(team)s = ANY(array_agg(m.team_id))"
        " ORDER BY u.id LIMIT %(limit)s",
        {"team": team, "limit": limit},
    ).fetchall()
    return [DemoUser(id, name, email, tuple(teams)) for id, name, email, teams in rows]


def issue_token(
    user: DemoUser,
    *,
    secret: str = DEMO_SECRET,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """A signed HS256 JWT for `user`, valid for `ttl_s` seconds."""
    issued = int(time.time() if now is None else now)
    payload = {**user.claims(), "iat": issued, "exp": issued + int(ttl_s)}
    return jwt.encode(payload, secret, algorithm=DEMO_ALGORITHM)
