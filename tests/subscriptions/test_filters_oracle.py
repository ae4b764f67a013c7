"""Differential test: a typed filter's shape agrees with Postgres on every row.

For random `where` inputs over random tables (`oracle_filters`), three row sets
must be equal: what Postgres returns for the input's meaning written by hand
(its values bound untyped), the rows the compiled shape's `matches` accepts,
and what Postgres returns for the shape's own snapshot SQL. Under a policy the
hand-written condition gets the policy's rule ANDed in, its claims bound as
further untyped parameters. PGSIFT_ORACLE_EXAMPLES scales the number of tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.pgtypes import configure
from pgsift.subscriptions import Catalog, Policy, QueryError
from pgsift.subscriptions.filters import compile_filter
from pgsift.subscriptions.typed_schema import typed_schema
from pgsift.subscriptions.typemodel import TypedTable
from tests.subscriptions.databases import scratch_database
from tests.subscriptions.oracle_clauses import array_text
from tests.subscriptions.oracle_filters import TABLE_DDL, FilterCase, filter_cases, renamed_row
from tests.subscriptions.oracle_rows import bound_row, rows

EXAMPLES = int(os.environ.get("PGSIFT_ORACLE_EXAMPLES", "200")) // 2
FILTERS_PER_TABLE = 20
POLICY = Policy(
    "public.filtered", row="plain_int = ANY(auth.ids) OR (is_done AND body_text <> auth.sub)"
)


class FilterOracle:
    def __init__(self, conn: psycopg.Connection[Any], catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog
        self.open = typed_schema(catalog).table("filtered")
        self.guarded = typed_schema(catalog, {POLICY.table: POLICY}).table("filtered")
        self.rows: list[dict[str, Any]] = []
        self.compared = 0
        self.both_refused = 0

    def load(self, table: list[dict[str, Any]]) -> None:
        self.conn.execute("TRUNCATE filtered")
        renamed = [renamed_row(bound_row(row)) for row in table]
        names = list(renamed[0])
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO filtered ({', '.join(names)}) "
                f"VALUES ({', '.join(['%s'] * len(names))})",
                [[row[name] for name in names] for row in renamed],
            )
        with self.conn.cursor(row_factory=dict_row) as cur:
            self.rows = cur.execute("SELECT * FROM filtered ORDER BY id").fetchall()

    def postgres_ids(self, sql: str, params: list[str | None]) -> set[int] | str:
        encoded = [None if p is None else p.encode() for p in params]
        result = self.conn.pgconn.exec_params(sql.encode(), encoded)
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            return result.error_message.decode(errors="replace")
        return {int(result.get_value(i, 0) or b"0") for i in range(result.ntuples)}

    def check(self, case: FilterCase, claims: dict[str, Any] | None = None) -> None:
        meaning, params = case.sql, list(case.pg_params)
        table: TypedTable = self.open
        policies = None
        if claims is not None:
            first = len(params) + 1
            meaning = (f"({meaning}) AND (plain_int = ANY(${first}) OR "
                       f"(is_done AND body_text <> ${first + 1}))")  # fmt: skip
            params += [array_text(claims["ids"]), claims["sub"]]
            table, policies = self.guarded, {POLICY.table: POLICY}
        expected = self.postgres_ids(f"SELECT id FROM filtered WHERE {meaning}", params)
        try:
            shape = compile_filter(table, case.where).to_shape(
                catalog=self.catalog, claims=claims, policies=policies
            )
        except QueryError as exc:
            assert isinstance(expected, str), f"pgsift refused what Postgres ran: {case}\n{exc}"
            self.both_refused += 1
            return
        assert not isinstance(expected, str), (
            f"Postgres refused what pgsift took: {case}\n{expected}"
        )
        got = {row["id"] for row in self.rows if shape.matches(row)}
        assert got == expected, _explain(case, expected, got, self.rows)
        sql, sql_params = shape.to_sql()
        with self.conn.cursor() as cur:
            from_snapshot = {r[0] for r in cur.execute(sql, sql_params).fetchall()}
        assert from_snapshot == got, _explain(case, from_snapshot, got, self.rows)
        self.compared += 1


def _explain(
    case: FilterCase, expected: set[int], got: set[int], table: list[dict[str, Any]]
) -> str:
    differing = [row for row in table if (row["id"] in expected) != (row["id"] in got)]
    return (
        f"where={case.where!r}\nmeaning={case.sql}\nparams={case.pg_params!r}\n"
        f"postgres={sorted(expected)} pgsift={sorted(got)}\ndiffering rows: {differing!r}"
    )


@pytest.fixture(scope="module")
def oracle(postgres_server: Any) -> Iterator[FilterOracle]:
    with (
        scratch_database(postgres_server, "pgsift_filter_oracle") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        conn.execute(TABLE_DDL)
        configure(conn)  # TimeZone UTC, values (JSON null, the enum) as pgsift reads them
        yield FilterOracle(conn, load_catalog(conn))


_SUPPRESSED = [
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture
]


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=_SUPPRESSED)
@given(
    table=rows(),
    batch=st.lists(filter_cases(), min_size=FILTERS_PER_TABLE, max_size=FILTERS_PER_TABLE),
)
def test_typed_filters_agree_with_postgres(
    oracle: FilterOracle, table: list[dict[str, Any]], batch: list[FilterCase]
) -> None:
    oracle.load(table)
    compared = oracle.compared
    for case in batch:
        oracle.check(case)
    # Guard against a generator whose inputs both sides merely refuse.
    assert oracle.compared - compared >= FILTERS_PER_TABLE // 2


@settings(
    max_examples=max(EXAMPLES // 5, 10), deadline=None, database=None,
    suppress_health_check=_SUPPRESSED,
)  # fmt: skip
@given(
    table=rows(),
    batch=st.lists(filter_cases(), min_size=5, max_size=5),
    ids=st.lists(st.one_of(st.none(), st.integers(-1, 3)), max_size=3),
)
def test_typed_filters_under_a_policy_agree_with_postgres(
    oracle: FilterOracle, table: list[dict[str, Any]], batch: list[FilterCase], ids: list[Any]
) -> None:
    oracle.load(table)
    for case in batch:
        oracle.check(case, claims={"ids": ids, "sub": "a"})
