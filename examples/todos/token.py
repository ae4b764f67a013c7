"""A token for the example apps: `python -m examples.todos.token 1 2` prints a bearer
token whose `list_ids` claim (1 and 2) the todos policy reads."""

from __future__ import annotations

import sys
import time

import jwt

# Only for the example: the `[auth]` secret of examples/todos/pgsift.toml.
EXAMPLE_SECRET = "pgsift-example-secret-do-not-use-in-production"


def token(list_ids: list[int], *, sub: str = "example", ttl_s: float = 24 * 3600.0) -> str:
    """`Bearer <jwt>` for a client that may read the todos of `list_ids`."""
    claims = {"sub": sub, "list_ids": list_ids, "exp": int(time.time() + ttl_s)}
    return "Bearer " + jwt.encode(claims, EXAMPLE_SECRET, algorithm="HS256")


if __name__ == "__main__":
    print(token([int(arg) for arg in sys.argv[1:]] or [1]))
