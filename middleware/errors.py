"""Errors of the I/O layer; all derive from `PgsiftError`."""

from __future__ import annotations

from pgsift.subscriptions.errors import PgsiftError


class ConfigError(PgsiftError):
    """A setting is missing or has a bad value; the message names it."""


class EmbeddedServerError(PgsiftError):
    """A throwaway Postgres or Redis could not be started."""


class CaptureError(PgsiftError):
    """Change capture cannot run (database not ready, slot in use, lost lock)."""


class FeedError(PgsiftError):
    """The Redis change feed is unreachable or holds something unexpected."""


class GatewayError(PgsiftError):
    """A request to the gateway that cannot be served."""


class AuthError(GatewayError):
    """A token is missing, malformed, expired or not signed by a trusted key."""


class LoaderError(GatewayError):
    """A batch load failed for this caller (bad key, unknown table, database down)."""
