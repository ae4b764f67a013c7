"""The one error hierarchy of pgsift.

Every error pgsift raises on purpose derives from `PgsiftError`; each layer adds
its own subclasses (`pgsift.middleware.errors`, `pgsift.workers.errors`). The root
lives here, in the pure core, because every other layer may import from it.
"""

from __future__ import annotations


class PgsiftError(Exception):
    """Root of every error pgsift raises on purpose."""


class QueryError(PgsiftError):
    """A subscription query that pgsift refuses; says what and where.

    `position` is the 0-based character offset into the SQL text (None when the
    problem is not tied to one place, e.g. a wrong parameter count); `line` and
    `column` are 1-based and derived from it for humans.
    """

    def __init__(self, message: str, *, sql: str | None = None, position: int | None = None):
        self.reason = message
        self.sql = sql
        self.position = position
        self.line: int | None = None
        self.column: int | None = None
        if sql is not None and position is not None:
            before = sql[:position]
            self.line = before.count("\n") + 1
            self.column = position - (before.rfind("\n") + 1) + 1
            message = f"{message} (line {self.line}, column {self.column})"
        super().__init__(message)


class PolicyError(QueryError):
    """A query or fetch that the caller's auth policy does not allow."""
