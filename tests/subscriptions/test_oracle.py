"""Differential test: pgsift's verdict on every row equals Postgres's, for random clauses.

One table load per example, one query per clause: for each clause, Postgres runs
`SELECT id FROM t WHERE <clause>` with the parameters bound untyped, and runs
the shape's own `to_sql()`; both id sets must equal the rows `matches` accepts.
A clause with subqueries is judged with its inner sets as Postgres computes them
(each `InnerSet.to_sql()`), and each inner set's own predicate is checked
against those rows too (nested sets included).
Under a policy, the first query is `WHERE (<clause>) AND (<rule>)` with the rule
written here by hand and its claims bound as further untyped parameters, so
pgsift's own rendering of the policy is checked against Postgres too; an inner
select of `w` reads `w` through its policy's rule (`FROM (SELECT * FROM w WHERE
<rule>) AS w` for Postgres).
PGSIFT_ORACLE_EXAMPLES raises the number of examples (tables); each has
CLAUSES_PER_TABLE clauses.
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
from pgsift.subscriptions import Catalog, Policy, QueryError, Shape
from pgsift.subscriptions.pgtext import parse_text
from pgsift.subscriptions.registry import SetRegistry
from tests.subscriptions.databases import scratch_database
from tests.subscriptions.oracle_clauses import Clause, array_text, clauses
from tests.subscriptions.oracle_rows import COLUMNS, TABLE_DDL, bound_row, inner_rows, rows

EXAMPLES = int(os.environ.get("PGSIFT_ORACLE_EXAMPLES", "200"))
# w's row policy: an inner select of w reads only these rows.
W_RULE = "b"
CLAUSES_PER_TABLE = 20


class Oracle:
    def __init__(self, conn: psycopg.Connection[Any], catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog
        self.rows: list[dict[str, Any]] = []
        self.cases = 0
        self.both_refused = 0

    def load(
        self, table: list[dict[str, Any]], inner: dict[str, list[dict[str, Any]]] | None = None
    ) -> None:
        names = ("id", *COLUMNS)
        self.inner_rows: dict[str, list[dict[str, Any]]] = {}
        for name, content in {"t": table, **(inner or {})}.items():
            self.conn.execute(f"TRUNCATE {name}")
            with self.conn.cursor() as cur:
                marks = ", ".join(["%s"] * len(names))
                cur.executemany(
                    f"INSERT INTO {name} ({', '.join(names)}) VALUES ({marks})",
                    [[bound[column] for column in names] for bound in map(bound_row, content)],
                )
            # Judge rows exactly as pgsift's connections read them (float4 rounding,
            # char(n) padding, JSON null), and as capture decodes their text.
            with self.conn.cursor(row_factory=dict_row) as cur:
                loaded = cur.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
                texts = cur.execute(f"SELECT id, j::text FROM {name} ORDER BY id").fetchall()
            decoded = [None if r["j"] is None else parse_text("jsonb", r["j"]) for r in texts]
            assert decoded == [row["j"] for row in loaded]
            self.inner_rows[f"public.{name}"] = loaded
        self.rows = self.inner_rows.pop("public.t")

    def inner_sets(self, shape: Shape) -> SetRegistry:
        """The shape's inner sets as Postgres computes them; each set's own verdicts checked."""
        registry = SetRegistry()
        needed = registry.acquire(shape.inner_sets)
        for mirror in registry.needed_mirrors(needed):  # the tables nested sets read
            assert registry.load_mirror(mirror, self.inner_rows[mirror.table])
        for inner in needed:
            sql, params = inner.to_sql()
            with self.conn.cursor(row_factory=dict_row) as cur:
                selected = cur.execute(sql, params).fetchall()
            assert registry.load(inner, selected)
            ours = {r["id"] for r in self.inner_rows[inner.table] if inner.matches(r, registry)}
            assert ours == {r["id"] for r in selected}, f"{inner}: {ours}"
        return registry

    def postgres_ids(self, sql: str, params: list[Any]) -> set[int] | str:
        encoded = [None if p is None else p.encode() for p in params]
        result = self.conn.pgconn.exec_params(sql.encode(), encoded)
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            return result.error_message.decode(errors="replace")
        return {int(result.get_value(i, 0) or b"0") for i in range(result.ntuples)}

    def check(
        self,
        clause: Clause,
        policies: dict[str, Policy] | None = None,
        claims: dict[str, Any] | None = None,
        rule: tuple[str, list[str | None]] | None = None,
    ) -> None:
        """`rule`: the policy's rule as SQL with `{}` for its claims' placeholders, and
        the claims' Postgres text (bound untyped after the clause's parameters)."""
        sql = f"SELECT id FROM t WHERE {clause.sql}"
        expected = self.postgres_ids(sql, clause.pg_params)
        if rule is not None and not isinstance(expected, str):
            template, claim_texts = rule
            first = len(clause.pg_params) + 1
            placeholders = [f"${first + i}" for i in range(len(claim_texts))]
            # An inner select reads w under w's policy: only the rows its rule allows.
            where = clause.sql.replace("FROM w", f"FROM (SELECT * FROM w WHERE {W_RULE}) AS w")
            expected = self.postgres_ids(
                f"SELECT id FROM t WHERE ({where}) AND ({template.format(*placeholders)})",
                [*clause.pg_params, *claim_texts],
            )
        try:
            shape = Shape.parse(
                sql,
                params=clause.json_params,
                catalog=self.catalog,
                policies=policies,
                claims=claims,
            )
        except QueryError as exc:
            assert isinstance(expected, str), f"pgsift refused what Postgres ran: {sql}\n{exc}"
            self.both_refused += 1
            return
        assert not isinstance(expected, str), (
            f"Postgres refused what pgsift took: {sql}\n{expected}"
        )
        sets = self.inner_sets(shape)
        got = {row["id"] for row in self.rows if shape.matches(row, sets)}
        if policies is None or rule is not None:
            assert got == expected, _explain(sql, clause, expected, got, self.rows)
        snapshot_sql, snapshot_params = shape.to_sql()
        with self.conn.cursor() as cur:
            from_snapshot = {r[0] for r in cur.execute(snapshot_sql, snapshot_params).fetchall()}
        assert from_snapshot == got, _explain(snapshot_sql, clause, from_snapshot, got, self.rows)
        self.cases += 1


def _explain(
    sql: str, clause: Clause, expected: set[int], got: set[int], table: list[dict[str, Any]]
) -> str:
    differing = [row for row in table if (row["id"] in expected) != (row["id"] in got)]
    return (
        f"{sql}\nparams={clause.json_params!r}\npostgres={sorted(expected)} pgsift={sorted(got)}\n"
        f"differing rows: {differing!r}"
    )


@pytest.fixture(scope="module")
def oracle(postgres_server: Any) -> Iterator[Oracle]:
    with (
        scratch_database(postgres_server, "pgsift_oracle") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        configure(conn)  # TimeZone UTC, values as pgsift reads them
        conn.execute(TABLE_DDL)
        yield Oracle(conn, load_catalog(conn))


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@_SETTINGS
@given(
    table=rows(),
    inner=inner_rows(),
    batch=st.lists(clauses(), min_size=CLAUSES_PER_TABLE, max_size=CLAUSES_PER_TABLE),
)
def test_matches_agrees_with_postgres(
    oracle: Oracle,
    table: list[dict[str, Any]],
    inner: dict[str, list[dict[str, Any]]],
    batch: list[Clause],
) -> None:
    oracle.load(table, inner)
    compared = oracle.cases
    for clause in batch:
        oracle.check(clause)
    # Guard against a generator whose clauses both sides merely refuse.
    assert oracle.cases - compared >= CLAUSES_PER_TABLE // 2


@settings(
    max_examples=max(EXAMPLES // 5, 10),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    table=rows(),
    inner=inner_rows(),
    batch=st.lists(clauses(), min_size=5, max_size=5),
    ids=st.lists(st.one_of(st.none(), st.integers(-1, 3)), max_size=3),
)
def test_policy_is_anded_into_matches_and_to_sql(
    oracle: Oracle,
    table: list[dict[str, Any]],
    inner: dict[str, list[dict[str, Any]]],
    batch: list[Clause],
    ids: list[int | None],
) -> None:
    oracle.load(table, inner)
    policies = {
        "public.t": Policy.from_config("t", {"row": "i4 = ANY(auth.ids) OR (b AND t <> auth.sub)"}),
        "public.u": Policy.from_config("u", {}),
        "public.w": Policy.from_config("w", {"row": W_RULE}),
    }
    # The same rules for Postgres, by hand: claims as untyped parameters, not pgsift's SQL.
    rule = ("i4 = ANY({}) OR (b AND t <> {})", [array_text(ids), "a"])
    for clause in batch:
        oracle.check(clause, policies=policies, claims={"ids": ids, "sub": "a"}, rule=rule)


# Strings with and without trailing spaces in text, varchar and char(4) columns.
_PADDED = ["", " ", "a", "a ", "a  ", " a", "b"]
# bpchar with varchar is the bpchar operator (both sides without trailing spaces), with
# text the text operator; an IN list of several items takes its left side's type, one
# item is a plain `=`, and `ARRAY[...]` has its own type.
_TEXT_CLAUSES = [
    f"{column} {op} {constant}"
    for column in ("c", "v", "t")
    for op in ("=", "<>", "<", "<=", ">", ">=")
    for constant in ("' '::varchar", "'a '::varchar", "'a'::bpchar", "'a '::text", "$1")
] + [
    "c = v", "v = c", "c < v", "v >= c", "c = t", "t > c", "c <> v",
    "c IN (' '::varchar)", "c IN ('a '::text)", "c IN ('a '::text, 'b'::text)",
    "c IN ('a '::varchar, 'b'::bpchar)", "v IN ('a'::bpchar)",
    "v IN ('a'::bpchar, 'b'::varchar)", "t IN ('a'::bpchar, 'b'::varchar)",
    "c NOT IN ('a '::varchar, ' '::varchar)", "v BETWEEN 'a'::bpchar AND 'a'::bpchar",
    "c BETWEEN 'a '::varchar AND 'a '::varchar",
    "c = ANY (ARRAY['a '::text, 'b'::text])", "c = ANY (ARRAY['a '::varchar, 'b'::text])",
    "v = ANY (ARRAY['a'::bpchar, 'b'::varchar])", "c < ANY (ARRAY['a '::varchar])",
    "c = ANY (ARRAY['a '::text])", "v <> ALL (ARRAY['a'::bpchar, 'b'::text])",
]  # fmt: skip


@pytest.mark.parametrize("sql", _TEXT_CLAUSES)
def test_text_types_compare_as_postgres_does(oracle: Oracle, sql: str) -> None:
    table = [
        {"id": i, **dict.fromkeys(COLUMNS), "t": text, "v": text, "c": text}
        for i, text in enumerate(_PADDED)
    ]
    oracle.load(table)
    params = ["a "] if "$1" in sql else []
    before = oracle.cases
    oracle.check(Clause(sql, list(params), list(params)))
    assert oracle.cases == before + 1
