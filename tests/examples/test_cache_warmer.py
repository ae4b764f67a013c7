"""The cache warmer example: `pgsift warm` builds a dump of each declared shape."""

from __future__ import annotations

import re
import subprocess
import tomllib

import psycopg

from examples.issue_tracker import apply_schema, seed
from tests.examples.stack import PGSIFT, ROOT

CONFIG = ROOT / "examples" / "cache_warmer" / "pgsift.toml"


def test_warm_builds_every_declared_shape(database_url: str, redis_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)
        seed(conn, issues=1_000, seed=4)
        expected = []
        for shape in tomllib.loads(CONFIG.read_text())["warm"]:
            sql = shape["query"].replace("$1", "%s")
            claims = shape.get("claims", {})
            # The memberships' policy (user_id = auth.user_id) is ANDed in; users have none.
            where = " WHERE user_id = %s" if "user_id" in claims else ""
            params = [*shape.get("params", []), *claims.values()]
            count = conn.execute(f"SELECT count(*) FROM ({sql}) q{where}".encode(),
                                 params).fetchone()
            assert count is not None
            expected.append(count[0])
    done = subprocess.run(
        [str(PGSIFT), "--log-level", "WARNING", "warm", "--config", str(CONFIG),
         "--database-url", database_url, "--redis-url", redis_url, "--now", "--burst"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    built = [int(n.replace(",", ""))
             for n in re.findall(r"^finished .* built ([\d,]+) rows", done.stdout, re.M)]
    assert sorted(built) == sorted(expected), done.stdout
