"""`python -m examples.graphene_app`: the example app with pgsift mounted, on :8000.

Needs PGSIFT_DATABASE_URL and PGSIFT_REDIS_URL, and `pgsift capture` running
for the same database (README.md of this folder).
"""

from __future__ import annotations

from examples.graphene_app.app import app
from examples.todos.serve import serve

if __name__ == "__main__":
    serve(__doc__ or "", app)
