"""Errors of the background workers; all derive from `PgsiftError`."""

from __future__ import annotations

from pgsift.middleware.errors import DumpError
from pgsift.subscriptions.errors import PgsiftError

__all__ = ["DumpError", "WorkerError"]


class WorkerError(PgsiftError):
    """A background job could not do its work."""
