"""An "existing app" for pgsift to sit in front of: a small issue tracker.

It knows nothing about pgsift. `schema.sql` is its schema, `dataset.seed` fills
it with a deterministic data set of any size, `workload.Writer` behaves like its
users, and `auth` issues the demo's sign-in tokens (users with their team
memberships). The command lines are `python -m examples.issue_tracker.seed`,
`.writer` and `.tokens`. `mutators` is the one part written for pgsift: the
writes its clients may make through the gateway (named in `pgsift.toml`).
"""

from __future__ import annotations

from examples.issue_tracker.auth import DEMO_SECRET, DemoUser, demo_users, issue_token
from examples.issue_tracker.dataset import SeedResult, SeedSize, seed
from examples.issue_tracker.schema import TABLES, apply_schema, drop_schema
from examples.issue_tracker.workload import Step, Writer, WriterStats

__all__ = [
    "DEMO_SECRET",
    "TABLES",
    "DemoUser",
    "SeedResult",
    "SeedSize",
    "Step",
    "Writer",
    "WriterStats",
    "apply_schema",
    "demo_users",
    "drop_schema",
    "issue_token",
    "seed",
]
