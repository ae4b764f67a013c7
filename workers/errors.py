"""Errors of the background workers; all derive from `PgsiftError`."""

from __future__ import annotations

from pgsift.subscriptions.errors import PgsiftError


class WorkerError(PgsiftError):
    """A background job could not do its work."""


class DumpError(WorkerError):
    """A bootstrap dump is missing, corrupt, or of an unknown format version."""
