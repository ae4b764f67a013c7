"""pg_lower / pg_upper equal the server's lower() / upper() on every code point."""

from __future__ import annotations

import psycopg

from pgsift.subscriptions.casefold import pg_lower, pg_upper
from tests.conftest import PostgresServer


def test_every_code_point_folds_as_on_the_server(postgres_server: PostgresServer) -> None:
    query = """
        SELECT cp, lower(chr(cp)), upper(chr(cp)) FROM generate_series(1, 1114111) AS cp
        WHERE cp NOT BETWEEN 55296 AND 57343
          AND (lower(chr(cp)) <> chr(cp) OR upper(chr(cp)) <> chr(cp))
    """
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SHOW lc_ctype").fetchone() == ("C.UTF-8",)
        changed = {cp: (low, up) for cp, low, up in conn.execute(query).fetchall()}
    wrong = [
        (hex(cp), expected, (pg_lower(chr(cp)), pg_upper(chr(cp))))
        for cp in range(1, 0x110000)
        if not 0xD800 <= cp <= 0xDFFF
        and (pg_lower(chr(cp)), pg_upper(chr(cp)))
        != (expected := changed.get(cp, (chr(cp), chr(cp))))
    ]
    assert wrong == []
