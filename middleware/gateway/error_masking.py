"""Masking errors: which a client may read (pgsift's own), and not the internals behind them.

A `PgsiftError` (QueryError with its position, PolicyError, GatewayError,
AuthError, ...) is written for the caller and passes through; so do GraphQL's
own errors about the document (syntax, validation), which have no original
exception. Anything else (a psycopg message with SQL text, a bug's traceback
text) reaches the client as `MASKED_MESSAGE` and is logged here instead.
Both the strawberry schema (as a `MaskErrors` extension) and the graphene
transport (`transport_ws.py`) apply this policy.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

from pgsift.subscriptions.errors import PgsiftError

log = logging.getLogger(__name__)

MASKED_MESSAGE = "Unexpected error."


def should_mask(error: GraphQLError) -> bool:
    """Whether `error` hides an internal exception the client must not see."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    if original is None or isinstance(original, (PgsiftError, GraphQLError)):
        return False
    log.error("internal error answered as %r", MASKED_MESSAGE, exc_info=original)
    return True


def masked(error: GraphQLError) -> GraphQLError:
    """`error`, or an anonymous one in its place when `should_mask(error)`."""
    if not should_mask(error):
        return error
    return GraphQLError(
        MASKED_MESSAGE, nodes=error.nodes, source=error.source,
        positions=error.positions, path=error.path,
    )
