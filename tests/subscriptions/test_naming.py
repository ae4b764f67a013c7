"""GraphQL names: the convention, and clashes refused with both sides named."""

from __future__ import annotations

from typing import Any

import pytest

from pgsift.subscriptions import Catalog, Policy
from pgsift.subscriptions.naming import NamingError, base_name, camel, pascal, table_names
from pgsift.subscriptions.typed_schema import typed_schema


@pytest.mark.parametrize(
    ("name", "camel_case", "pascal_case"),
    [
        ("issue_labels", "issueLabels", "IssueLabels"),
        ("team_id", "teamId", "TeamId"),
        ("id", "id", "Id"),
        ("teamID", "teamID", "TeamID"),
        ("Team_Id", "TeamId", "TeamId"),
        ("a__b", "aB", "AB"),
        ("col_1", "col1", "Col1"),
        ("name_", "name", "Name"),
        ("_private_note", "_privateNote", "_PrivateNote"),
        ("_", "_", "_"),
    ],
)
def test_case_conversion(name: str, camel_case: str, pascal_case: str) -> None:
    assert camel(name) == camel_case
    assert pascal(name) == pascal_case


def test_other_schemas_are_prefixed() -> None:
    assert base_name("public.issue_labels") == "issue_labels"
    assert base_name("audit.events") == "audit_events"
    catalog = Catalog.from_dict({
        "audit.events": {"columns": {"id": "int8", "at_time": "timestamptz"},
                         "primary_key": ["id"]},
    })  # fmt: skip
    names = table_names(catalog.table("audit.events"), ["id", "at_time"])
    assert (names.type, names.field) == ("AuditEvents", "auditEvents")
    assert names.fields == {"id": "id", "at_time": "atTime"}
    assert names.columns == {"id": "id", "atTime": "at_time"}
    assert (names.bool_exp, names.key, names.key_input, names.by_key) == (
        "AuditEventsBoolExp", "AuditEventsKey", "AuditEventsKeyInput", "auditEventsByKey"
    )  # fmt: skip


def _tables(**tables: dict[str, str]) -> Catalog:
    return Catalog.from_dict(
        {name.replace("__", "."): {"columns": columns, "primary_key": [next(iter(columns))]}
         for name, columns in tables.items()}
    )  # fmt: skip


def _refused(catalog: Catalog, *fragments: str, **kwargs: Any) -> None:
    with pytest.raises(NamingError) as caught:
        typed_schema(catalog, **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_two_tables_with_one_name_are_refused_naming_both() -> None:
    catalog = _tables(public__audit_events={"id": "int8"}, audit__events={"id": "int8"})
    _refused(catalog, "table audit.events", "table public.audit_events", "AuditEvents")


def test_a_table_named_like_anothers_derived_type_is_refused() -> None:
    catalog = _tables(issues={"id": "int8"}, issues_key={"id": "int8"})
    _refused(catalog, "the key type of table public.issues", "table public.issues_key",
             "IssuesKey")  # fmt: skip
    catalog = _tables(issues={"id": "int8"}, issues_by_key={"id": "int8"})
    _refused(catalog, "issuesByKey", "public.issues_by_key", "public.issues")


def test_two_columns_with_one_field_are_refused_naming_both() -> None:
    catalog = _tables(t={"id": "int8", "team_id": "int4", "teamId": "int4"})
    _refused(catalog, "'team_id'", "'teamId'", "public.t", "teamId")


@pytest.mark.parametrize(
    ("table", "fragments"),
    [
        ("sync_message", ("pgsift's type SyncMessage", "table public.sync_message")),
        ("subscription", ("the root type Subscription",)),
        ("int", ("GraphQL's built-in scalar Int",)),
        ("big_int", ("pgsift's scalar BigInt",)),
        ("string_comparison_exp", ("pgsift's comparison input StringComparisonExp",)),
        ("sync", ("pgsift's root field sync",)),
        ("op", ("pgsift's type Op",)),
    ],
)
def test_reserved_names_are_refused(table: str, fragments: tuple[str, ...]) -> None:
    _refused(_tables(**{table: {"id": "int8"}}), *fragments)


def test_enums_take_names_too() -> None:
    catalog = Catalog.from_dict(
        {"issues": {"columns": {"id": "int8", "status": "issue_status"}, "primary_key": ["id"]},
         "issue_status": {"columns": {"id": "int8"}, "primary_key": ["id"]}},
        enums={"issue_status": ["open"]},
    )  # fmt: skip
    _refused(catalog, "the enum issue_status", "table public.issue_status", "IssueStatus")


def test_invalid_names_are_refused() -> None:
    _refused(_tables(t={"id": "int8", "my col": "text"}), "'my col'", "public.t",
             "policy's columns")  # fmt: skip
    _refused(_tables(t={"id": "int8", "__hidden": "text"}), "'__hidden'")
    _refused(_tables(t={"id": "int8", "naïve": "text"}), "'naïve'")
    _refused(_tables(t={"id": "int8", "_and": "text"}), "'_and'", "TBoolExp", "operator")
    _refused(_tables(**{"t-1": {"id": "int8"}}), "table public.t-1")


def test_a_policy_that_leaves_a_clash_out_makes_it_go_away() -> None:
    catalog = _tables(t={"id": "int8", "team_id": "int4", "teamId": "int4"},
                      issues={"id": "int8"}, issues_key={"id": "int8"})  # fmt: skip
    policies = {
        "public.t": Policy("public.t", columns=("id", "team_id")),
        "public.issues": Policy("public.issues"),
    }
    model = typed_schema(catalog, policies)
    assert list(model.tables) == ["public.t", "public.issues"]
    assert model.table("t").names.fields == {"id": "id", "team_id": "teamId"}
    # Without policies, only the tracked tables count.
    assert list(typed_schema(catalog, tables=["issues"]).tables) == ["public.issues"]
