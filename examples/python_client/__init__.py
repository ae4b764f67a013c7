"""An async Python client that keeps a local SQLite replica of pgsift queries, and writes.

    python -m examples.python_client --url http://127.0.0.1:8000 --token JWT \\
        --replica issues.sqlite --query 'open=SELECT id, title FROM issues WHERE team_id = 1'
"""

from __future__ import annotations

from examples.python_client.client import SYNC_SUBSCRIPTION, SyncClient, SyncError
from examples.python_client.overlay import Confirmation, Failure, Settled
from examples.python_client.pending import LocalWrites, PendingMutation, PendingQueue
from examples.python_client.protocol import GraphQLWebSocket, OperationError, ProtocolError
from examples.python_client.replica import QueryState, Replica

__all__ = [
    "SYNC_SUBSCRIPTION",
    "Confirmation",
    "Failure",
    "GraphQLWebSocket",
    "LocalWrites",
    "OperationError",
    "PendingMutation",
    "PendingQueue",
    "ProtocolError",
    "QueryState",
    "Replica",
    "Settled",
    "SyncClient",
    "SyncError",
]
