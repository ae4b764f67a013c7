"""SQL text -> one validated `SELECT columns FROM table [WHERE ...]`, with positions.

Only the statement's outline is checked here; the WHERE clause is typed and
checked by `analyze`. Every refusal is a `QueryError` naming the construct and
where it starts in the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from pgsift.subscriptions.errors import QueryError

# Client text is bounded before it is parsed: its length, and how deeply it nests
# (sqlglot's parser recurses ~20 Python frames per parenthesis, ~10 per NOT).
MAX_SQL_LENGTH = 64 * 1024
MAX_NESTING = 24
_POSTGRES = Dialect.get_or_raise("postgres")
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})
_ENDS_NOT = frozenset({TokenType.AND, TokenType.OR, TokenType.SEMICOLON, TokenType.COMMA})

# Select clauses other than the column list, FROM and WHERE, named for messages.
_CLAUSES = {
    "with_": "WITH is",
    "distinct": "DISTINCT is",
    "into": "SELECT INTO is",
    "joins": "joins are",
    "laterals": "LATERAL is",
    "group": "GROUP BY is",
    "having": "HAVING is",
    "qualify": "QUALIFY is",
    "windows": "window functions are",
    "order": "ORDER BY is",
    "limit": "LIMIT is",
    "offset": "OFFSET is",
    "locks": "FOR UPDATE / FOR SHARE is",
    "sample": "TABLESAMPLE is",
}


@dataclass(frozen=True, slots=True)
class SelectItem:
    """A selected column (`name`), or `*` when `name` is None (a constant: `constant`)."""

    name: str | None
    position: int | None
    constant: bool = False


@dataclass(frozen=True, slots=True)
class ParsedSelect:
    sql: str
    schema: str | None
    table: str
    table_position: int | None
    qualifiers: frozenset[str]  # names that may qualify a column: table, alias
    items: tuple[SelectItem, ...]
    where: exp.Expression | None


def position_of(node: exp.Expression) -> int | None:
    """0-based offset where `node` starts in the SQL text, if sqlglot recorded one."""
    starts: list[int] = []
    for child in node.walk():
        start = child.meta.get("start") if child.meta else None
        if isinstance(start, int):
            if isinstance(child.parent, exp.Parameter):
                start -= 1
            starts.append(start)
    return min(starts) if starts else None


def identifier_name(node: exp.Expression | str | None) -> str:
    """An identifier as Postgres folds it: unquoted names are lower-cased."""
    if isinstance(node, exp.Identifier):
        return str(node.this) if node.quoted else str(node.this).lower()
    if isinstance(node, exp.Expression):
        return identifier_name(node.this)
    return "" if node is None else node.lower()


def parse_statements(sql: str, *, error: type[QueryError] = QueryError) -> list[exp.Expression]:
    """sqlglot's parse (Postgres dialect); syntax errors become `error` with a position.

    Text longer than `MAX_SQL_LENGTH` or nested deeper than `MAX_NESTING` is refused
    before sqlglot sees it: its parser recurses some twenty frames per level.
    """
    if len(sql) > MAX_SQL_LENGTH:
        raise error(f"query is too long ({len(sql)} characters, at most {MAX_SQL_LENGTH})")
    try:
        # The newline works around a sqlglot tokenizer bug: with a `$n` in the text,
        # a '' literal at the very end is reported as an unterminated string.
        tokens = _POSTGRES.tokenize(sql + "\n")
        _check_nesting(sql, tokens, error)
        parsed = _POSTGRES.parser().parse(tokens, sql + "\n")
        statements = [s for s in parsed if isinstance(s, exp.Expression)]
    except RecursionError:
        raise error("query nested too deeply", sql=sql) from None
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        raise error(
            f"syntax error: {detail.get('description', str(exc))}",
            sql=sql,
            position=_offset(sql, detail.get("line"), detail.get("col")),
        ) from None
    except TokenError as exc:
        raise error(f"syntax error: {exc}", sql=sql) from None
    except QueryError:
        raise
    except Exception as exc:  # sqlglot on hostile text: never let its internals escape
        raise error(f"syntax error: {type(exc).__name__}: {exc}", sql=sql) from None
    if not statements:
        raise error("empty query", sql=sql)
    if len(statements) > 1:
        raise error(
            "multiple statements are not supported",
            sql=sql,
            position=position_of(statements[1]),
        )
    return statements


@lru_cache(maxsize=128)
def parse_select(sql: str) -> ParsedSelect:
    """Parse and check the outline of a subscription query (cached: many shapes share a text)."""
    (statement,) = parse_statements(sql)
    if not isinstance(statement, exp.Select):
        kind = statement.key.upper() if statement.key else "this statement"
        raise QueryError(
            f"only SELECT is supported, not {kind}", sql=sql, position=position_of(statement)
        )
    return select_outline(statement, sql)


def select_outline(statement: exp.Select, sql: str, *, constants: bool = False) -> ParsedSelect:
    """Check one `SELECT columns FROM table [WHERE ...]` (a query's or an inner select's).

    `constants`: the column list may hold constants too (`EXISTS (SELECT 1 ...)`).
    """
    for arg, label in _CLAUSES.items():
        value = statement.args.get(arg)
        if value:
            node = value[0] if isinstance(value, list) else value
            position = position_of(node) if isinstance(node, exp.Expression) else None
            if position is None:  # DISTINCT has no position of its own: where the list starts
                position = position_of(statement)
            raise QueryError(f"{label} not supported", sql=sql, position=position)
    source = statement.args.get("from_")
    if source is None:
        # A statement's own SELECT keyword has no node: 0 for the query, its first item inside.
        position = position_of(statement) if statement.parent is not None else 0
        raise QueryError("a FROM clause naming one table is required", sql=sql, position=position)
    table = source.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        what = "subqueries" if isinstance(table, exp.Subquery) else "this FROM clause"
        raise QueryError(
            f"{what} are not supported" if what == "subqueries" else f"{what} is not supported",
            sql=sql,
            position=position_of(table),
        )
    if table.args.get("catalog") is not None:
        raise QueryError(
            "database-qualified table names are not supported",
            sql=sql,
            position=position_of(table),
        )
    schema = identifier_name(table.args["db"]) if table.args.get("db") is not None else None
    name = identifier_name(table.this)
    alias = table.args.get("alias")
    qualifiers = {name} | ({identifier_name(alias.this)} if alias is not None else set())
    items = tuple(
        _select_item(sql, node, frozenset(qualifiers), constants) for node in statement.expressions
    )
    where = statement.args.get("where")
    return ParsedSelect(
        sql=sql,
        schema=schema,
        table=name,
        table_position=position_of(table),
        qualifiers=frozenset(qualifiers),
        items=items,
        where=where.this if where is not None else None,
    )


def parse_condition(text: str, *, error: type[QueryError] = QueryError) -> exp.Expression:
    """A bare SQL condition (a policy's row rule), not a statement."""
    (statement,) = parse_statements(text, error=error)
    if isinstance(statement, exp.Query) or not isinstance(statement, exp.Condition):
        raise error("a policy row rule must be a condition, not a statement", sql=text)
    return statement


def _select_item(
    sql: str, node: exp.Expression, qualifiers: frozenset[str], constants: bool
) -> SelectItem:
    position = position_of(node)
    if isinstance(node, exp.Star):
        return SelectItem(None, position)
    if constants and isinstance(node, exp.Literal | exp.Boolean | exp.Null):
        return SelectItem(None, position, constant=True)
    if isinstance(node, exp.Column):
        qualifier = node.args.get("table")
        if qualifier is not None and identifier_name(qualifier) not in qualifiers:
            raise QueryError(
                f"unknown table {identifier_name(qualifier)!r} in the column list",
                sql=sql,
                position=position,
            )
        if isinstance(node.this, exp.Star):
            return SelectItem(None, position)
        return SelectItem(identifier_name(node.this), position)
    if isinstance(node, exp.Alias):
        raise QueryError("column aliases are not supported", sql=sql, position=position)
    raise QueryError(
        f"only plain columns may be selected, not {describe(node, sql)}", sql=sql, position=position
    )


def describe(node: exp.Expression, sql: str | None = None) -> str:
    """A short name for a construct in an error message."""
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return "a subquery"
    if isinstance(node, exp.Window):
        return "a window function"
    if isinstance(node, exp.AggFunc):
        return f"aggregate function {node.sql_name().lower()}()"
    if isinstance(node, exp.Func):
        name = node.this if isinstance(node, exp.Anonymous) else node.sql_name()
        start, end = node.meta.get("start"), node.meta.get("end")
        if sql is not None and isinstance(start, int) and isinstance(end, int):
            name = sql[start : end + 1]
        return f"function {str(name).lower()}()"
    return repr(node.sql(dialect="postgres"))


def _check_nesting(sql: str, tokens: list[Token], error: type[QueryError]) -> None:
    """Refuse more than `MAX_NESTING` open parentheses, brackets and NOTs at one point.

    A NOT is open until the AND, OR or closing parenthesis that ends its operand
    (it binds tighter than AND/OR); `NOT NOT NOT x` nests like `((x))`.
    """
    # One entry per open level: the paren depth at which a NOT was opened, or -1 for a
    # parenthesis or bracket.
    stack: list[int] = []
    parens = 0
    for token in tokens:
        kind = token.token_type
        if kind in _OPENERS:
            stack.append(-1)
            parens += 1
        elif kind in _CLOSERS:
            while stack and stack[-1] >= 0:
                stack.pop()
            if stack:
                stack.pop()
                parens -= 1
        elif kind in _ENDS_NOT:
            while stack and stack[-1] == parens:
                stack.pop()
        elif kind == TokenType.NOT:
            stack.append(parens)
        if len(stack) > MAX_NESTING:
            raise error(
                f"query nested too deeply (more than {MAX_NESTING} levels of parentheses, "
                "brackets and NOT)",
                sql=sql,
                position=token.start,
            )


def _offset(sql: str, line: object, col: object) -> int | None:
    if not isinstance(line, int) or not isinstance(col, int):
        return None
    lines = sql.split("\n")
    if not 1 <= line <= len(lines):
        return None
    return sum(len(text) + 1 for text in lines[: line - 1]) + max(col - 1, 0)
