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


class GatewayBusyError(GatewayError):
    """No capacity for this request right now (every snapshot connection busy, or
    Postgres unreachable): not the caller's fault. HTTP 503 with `Retry-After`."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TooManyRequestsError(GatewayError):
    """The caller already has as many of these requests in flight as a limit allows
    (the message names the setting). HTTP 429 with `Retry-After`."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LoaderError(GatewayError):
    """A batch load failed for this caller (bad key, unknown table, database down)."""


class LoaderForbiddenError(LoaderError):
    """The caller's auth policy does not allow this load: a table no policy is for
    (when policies are configured), or a column it may not read. HTTP 403."""


class TooManyKeysError(LoaderError):
    """One request asks for more keys than a limit allows (`loader_max_keys`): refused
    before any of them is looked up. Not worth retrying as is; HTTP 400."""


class LoaderUnavailableError(LoaderError):
    """Postgres is down or slow, or the loader is full: not the caller's fault, retry later."""


class MutationError(GatewayError):
    """A mutate request that cannot be served; nothing of it ran. HTTP 400 unless a
    subclass says otherwise."""


class MutationForbiddenError(MutationError):
    """The client id belongs to another caller, or the caller has no owner claim. HTTP 403."""


class MutationGapError(MutationError):
    """A mutation id past the next one the client's ledger expects. HTTP 409.

    `last_mutation_id` is the ledger's: the client resends from the one after it.
    """

    def __init__(self, message: str, *, last_mutation_id: int) -> None:
        super().__init__(message)
        self.last_mutation_id = last_mutation_id


class MutationUnavailableError(MutationError):
    """Postgres is down or the mutation pool is exhausted: retry the same request later
    (mutations that committed are acknowledged as duplicates then). HTTP 503."""


class Refused(PgsiftError):
    """Raised by a mutator to refuse a mutation; the message is the caller's to read.

    The mutator's writes are rolled back, the client's mutation id still advances
    (recording this message), so the client drops its optimistic change. Import it
    as `pgsift.middleware.mutations.Refused`.
    """


class DumpError(PgsiftError):
    """A bootstrap dump is missing, corrupt, or of an unknown format version.

    Defined here because the gateway reads dumps; `pgsift.workers.errors`
    re-exports it for the jobs that build them.
    """
