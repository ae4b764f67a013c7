"""GraphQL names for tables, columns and enums, and the registry that refuses clashes.

The convention (`docs/graphql-schema.md`), as in Hasura's `graphql-default`:

* a table in `public` is named after its name, any other after `schema_name`
  (`public.issue_labels` -> `issue_labels`, `audit.events` -> `audit_events`);
  its object type is that name in PascalCase (`IssueLabels`, `AuditEvents`),
  its root fields in camelCase (`issueLabels`, `auditEvents`);
* a column's field is its name in camelCase (`team_id` -> `teamId`);
* an enum type is named like a table (`issue_status` -> `IssueStatus`).

PascalCase and camelCase split a name at underscores and upper-case the first
letter of each piece (the first piece too for PascalCase); leading underscores
are kept, the rest of each piece is left as it is (`teamID` stays `teamID`).
A name that is not a GraphQL name afterwards (`[_A-Za-z][_0-9A-Za-z]*`, not
starting with `__`), and two things that end up with one name, are refused
with a `NamingError` naming both, when the schema is built - never at a query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pgsift.subscriptions.catalog import Table
from pgsift.subscriptions.errors import PgsiftError

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

# The operator fields of every `...BoolExp` input: a column may not take their names.
BOOL_EXP_OPERATORS = ("_and", "_or", "_not")

# Names a table, enum or scalar of the typed schema may not take: GraphQL's own,
# the root types, and the types and root fields of pgsift's generic schema.
RESERVED_TYPES: Mapping[str, str] = {
    **{name: f"GraphQL's built-in scalar {name}" for name in ("Int", "Float", "String",
                                                                "Boolean", "ID")},
    **{name: f"the root type {name}" for name in ("Query", "Mutation", "Subscription")},
    **{name: f"pgsift's type {name}" for name in ("Change", "SyncMessage", "Op", "JSON",
                                                    "Confirmed", "FailedMutation",
                                                    "MutationStatus")},
}  # fmt: skip
RESERVED_FIELDS: Mapping[str, str] = {
    "sync": "pgsift's root field sync",
    "rows": "pgsift's root field rows",
}


class NamingError(PgsiftError):
    """The catalog cannot be given GraphQL names: an invalid name, or two things with one."""


def _pieces(name: str) -> tuple[str, list[str]]:
    body = name.lstrip("_")
    return name[: len(name) - len(body)], [piece for piece in body.split("_") if piece]


def camel(name: str) -> str:
    """`team_id` -> `teamId`, `_private_note` -> `_privateNote`."""
    lead, pieces = _pieces(name)
    if not pieces:
        return name
    return lead + pieces[0] + "".join(p[:1].upper() + p[1:] for p in pieces[1:])


def pascal(name: str) -> str:
    """`issue_labels` -> `IssueLabels`."""
    lead, pieces = _pieces(name)
    if not pieces:
        return name
    return lead + "".join(p[:1].upper() + p[1:] for p in pieces)


def is_graphql_name(name: str) -> bool:
    """A GraphQL Name that the spec does not reserve for introspection (`__...`)."""
    return _NAME.fullmatch(name) is not None and not name.startswith("__")


def base_name(qualified: str) -> str:
    """`public.issue_labels` -> `issue_labels`, `audit.events` -> `audit_events`."""
    schema, _, name = qualified.rpartition(".")
    return name if schema in ("", "public") else f"{schema}_{name}"


@dataclass(frozen=True, slots=True)
class TableNames:
    """Every GraphQL name derived from one table, and its columns' field names."""

    table: str  # schema-qualified
    type: str  # object type: `Issues`
    field: str  # root fields (`Subscription.issues`, `Query.issues`): `issues`
    fields: Mapping[str, str]  # readable column -> field, in table order
    columns: Mapping[str, str]  # field -> readable column

    @property
    def bool_exp(self) -> str:
        return f"{self.type}BoolExp"

    @property
    def key(self) -> str:
        return f"{self.type}Key"

    @property
    def key_input(self) -> str:
        return f"{self.type}KeyInput"

    @property
    def change(self) -> str:
        return f"{self.type}Change"

    @property
    def sync_message(self) -> str:
        return f"{self.type}SyncMessage"

    @property
    def by_key(self) -> str:
        return f"{self.field}ByKey"

    def derived_types(self) -> dict[str, str]:
        """Type name -> what it is, for the clash registry."""
        return {
            self.type: f"table {self.table}",
            self.bool_exp: f"the where input of table {self.table}",
            self.key: f"the key type of table {self.table}",
            self.key_input: f"the key input of table {self.table}",
            self.change: f"the change type of table {self.table}",
            self.sync_message: f"the message type of table {self.table}",
        }


def table_names(table: Table, columns: Sequence[str]) -> TableNames:
    """The names of `table` with its readable `columns`; NamingError for a bad or shared name."""
    base = base_name(table.name)
    type_name, field = pascal(base), camel(base)
    for name in (type_name, field):
        if not is_graphql_name(name):
            raise NamingError(
                f"table {table.name} has no valid GraphQL name ({name!r} is not a GraphQL "
                "name); rename it, or leave it out of the policies / capture.tables"
            )
    fields: dict[str, str] = {}
    owners: dict[str, str] = {}  # field -> column
    for column in (c for c in table.columns if c in columns):
        name = camel(column)
        if not is_graphql_name(name):
            raise NamingError(
                f"column {column!r} of {table.name} has no valid GraphQL field name ({name!r} "
                "is not a GraphQL name); leave it out of the policy's columns"
            )
        if name in BOOL_EXP_OPERATORS:
            raise NamingError(
                f"column {column!r} of {table.name} maps to the field {name}, which "
                f"{type_name}BoolExp uses as an operator; leave it out of the policy's columns"
            )
        if name in owners:
            raise NamingError(
                f"columns {owners[name]!r} and {column!r} of {table.name} both map to the "
                f"GraphQL field {name}; leave one out of the policy's columns"
            )
        owners[name] = column
        fields[column] = name
    return TableNames(table.name, type_name, field, fields, owners)


class NameRegistry:
    """The type and root-field names of one schema, each with what it stands for.

    Claiming a name that something else already holds raises a NamingError that
    names both; claiming it again for the same thing is a no-op.
    """

    def __init__(self) -> None:
        self._types: dict[str, str] = dict(RESERVED_TYPES)
        self._fields: dict[str, str] = dict(RESERVED_FIELDS)

    def claim_type(self, name: str, owner: str) -> None:
        self._claim(self._types, "type", name, owner)

    def claim_field(self, name: str, owner: str) -> None:
        self._claim(self._fields, "root field", name, owner)

    def claim_table(self, names: TableNames) -> None:
        """The types and root fields of one table."""
        for name, owner in names.derived_types().items():
            self.claim_type(name, owner)
        self.claim_field(names.field, f"the root fields of table {names.table}")
        self.claim_field(names.by_key, f"the by-key root field of table {names.table}")

    def _claim(self, taken: dict[str, str], kind: str, name: str, owner: str) -> None:
        if not is_graphql_name(name):
            raise NamingError(f"{owner} has no valid GraphQL name ({name!r})")
        holder = taken.setdefault(name, owner)
        if holder != owner:
            raise NamingError(
                f"GraphQL name clash: {holder} and {owner} are both named {name} (a {kind}); "
                "rename one, or leave one out of the policies / capture.tables"
            )
