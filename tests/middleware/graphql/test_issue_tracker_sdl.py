"""The typed SDL of the example issue tracker: its policies decide tables and fields.

The expected SDL is `tests/fixtures/graphql/issue_tracker.graphql`, the contract
codegen types are generated from (tests/e2e/test_codegen.py); a change to it is
a change to what clients see. PGSIFT_UPDATE_GOLDEN=1 rewrites it.
"""

from __future__ import annotations

import os

from graphql import build_schema, lexicographic_sort_schema, print_schema

from pgsift.middleware.graphql.graphene_types import GrapheneTypes
from pgsift.middleware.graphql.strawberry_types import StrawberryTypes
from pgsift.middleware.settings import load_settings
from pgsift.subscriptions import policies_from_config
from pgsift.subscriptions.typed_schema import typed_schema
from tests.middleware.graphql.issue_tracker import (
    CONFIG,
    GOLDEN,
    issue_tracker_catalog,
    issue_tracker_sdl,
)


def test_the_issue_tracker_sdl_is_the_golden_one(database_url: str) -> None:
    sdl = issue_tracker_sdl(database_url)
    if os.environ.get("PGSIFT_UPDATE_GOLDEN"):
        GOLDEN.write_text(sdl, encoding="utf-8")
    assert sdl == GOLDEN.read_text(encoding="utf-8"), "PGSIFT_UPDATE_GOLDEN=1 rewrites it"
    for expected in (
        "type Issues {", "teamId: BigInt!", "status: IssueStatus!", "estimate: Numeric",
        "tags: [String]!", "due: Date", "createdAt: Timestamptz!", "description: String",
        "enum IssueStatus {\n  backlog\n  todo\n  in_progress", "type TeamMembers {",
        "input TeamMembersKeyInput {\n  teamId: BigInt!\n  userId: BigInt!\n}",
        "issuesByKey(keys: [IssuesKeyInput!]!): [Issues]!",
        "issues(\n    where: IssuesBoolExp",
    ):  # fmt: skip
        assert expected in sdl, expected
    users = sdl.split("type Users {")[1].split("}")[0]
    assert "email" not in users and "createdAt" not in users  # the policy's columns only
    assert "IssueLabels" not in sdl  # no policy: not readable


def test_without_policies_every_tracked_table_is_typed(database_url: str) -> None:
    sdl = issue_tracker_sdl(database_url, with_policies=False)
    assert "type IssueLabels {" in sdl and "issueLabels(" in sdl
    assert "email: String!" in sdl


def test_both_libraries_print_the_issue_trackers_sdl_alike(database_url: str) -> None:
    catalog = issue_tracker_catalog(database_url)
    settings = load_settings(CONFIG, environ={})
    model = typed_schema(catalog, policies_from_config(settings.policies, catalog=catalog))
    strawberry_schema = StrawberryTypes(model).schema()._schema
    graphene_schema = GrapheneTypes(model).schema().graphql_schema
    printed = print_schema(lexicographic_sort_schema(strawberry_schema))
    assert printed == print_schema(lexicographic_sort_schema(graphene_schema))
    # The golden file is valid SDL and the same schema.
    golden = build_schema(GOLDEN.read_text(encoding="utf-8"))
    assert print_schema(lexicographic_sort_schema(golden)) == printed
