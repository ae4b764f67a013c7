"""Policies: config, binding to claims, column and row rules."""

from __future__ import annotations

import pytest

from pgsift.middleware.settings import load_settings
from pgsift.subscriptions import Catalog, Policy, PolicyError, Shape, policies_from_config

CATALOG = Catalog.from_dict(
    {"public.issues": {"columns": {"id": "int8", "team_id": "int4", "assignee_id": "text",
                                   "secret": "text"}, "primary_key": ["id"]}}
)  # fmt: skip
CONFIG = {
    "public.issues": {
        "columns": ["id", "team_id", "assignee_id"],
        "row": "team_id = ANY(auth.team_ids) OR assignee_id = auth.sub",
    }
}


def test_from_toml_settings(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pgsift.toml"
    path.write_text(
        '[policies."public.issues"]\ncolumns = ["id", "team_id"]\nrow = "team_id = auth.team"\n',
        encoding="utf-8",
    )
    policies = policies_from_config(load_settings(path, environ={}).policies, catalog=CATALOG)
    assert policies["public.issues"].columns == ("id", "team_id")


def test_bound_policy_for_batch_loads() -> None:
    policy = policies_from_config(CONFIG, catalog=CATALOG)["public.issues"]
    bound = policy.bind({"team_ids": [1, 2], "sub": "u1"})
    assert bound.allowed_columns == ("id", "team_id", "assignee_id")
    assert bound.matches({"id": 1, "team_id": 2, "assignee_id": None})
    assert bound.matches({"id": 1, "team_id": None, "assignee_id": "u1"})
    assert not bound.matches({"id": 1, "team_id": None, "assignee_id": None})
    assert bound.to_sql_where() == (
        '(("team_id" = ANY(%s::int4[])) OR ("assignee_id" = %s::text))',
        [[1, 2], "u1"],
    )


def test_shape_gets_policy_anded_and_columns_checked() -> None:
    policies = policies_from_config(CONFIG, catalog=CATALOG)
    claims = {"team_ids": [5], "sub": "u1"}
    s = Shape.parse("SELECT * FROM issues", catalog=CATALOG, policies=policies, claims=claims)
    assert s.columns == ("id", "team_id", "assignee_id")
    assert s.index_terms == ()  # an OR: nothing indexable
    assert not s.matches({"id": 1, "team_id": 6, "assignee_id": "u2"})
    with pytest.raises(PolicyError, match="secret"):
        Shape.parse(
            "SELECT id, secret FROM issues", catalog=CATALOG, policies=policies, claims=claims
        )
    with pytest.raises(PolicyError, match="missing claim 'sub'"):
        Shape.parse(
            "SELECT id FROM issues", catalog=CATALOG, policies=policies, claims={"team_ids": [1]}
        )
    with pytest.raises(PolicyError, match=r"auth\.team_ids"):
        Shape.parse(
            "SELECT id FROM issues",
            catalog=CATALOG,
            policies=policies,
            claims={"team_ids": "all", "sub": "u1"},
        )


@pytest.mark.parametrize(
    "claims", [{"team_ids": None, "sub": "u1"}, {"team_ids": [1], "sub": None}]
)
def test_a_null_claim_is_an_error_not_sql_null(claims: dict[str, object]) -> None:
    """`{"sub": null}` in a token is no value to compare with: refused like a missing claim,
    never SQL NULL (which would make the rule silently match nothing)."""
    policies = policies_from_config(CONFIG, catalog=CATALOG)
    name = next(name for name, value in claims.items() if value is None)
    with pytest.raises(PolicyError, match=f"claim '{name}' is null"):
        Shape.parse("SELECT id FROM issues", catalog=CATALOG, policies=policies, claims=claims)
    with pytest.raises(PolicyError, match=f"claim '{name}' is null"):
        policies["public.issues"].bind(claims)


def test_claims_in_policies_index_like_parameters() -> None:
    policies = {"public.issues": Policy.from_config("issues", {"row": "team_id = ANY(auth.teams)"})}
    s = Shape.parse(
        "SELECT id FROM issues", catalog=CATALOG, policies=policies, claims={"teams": [3, 4]}
    )
    assert s.index_terms == (("team_id", frozenset({3, 4})),)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"colums": ["id"]}, "unknown key"),
        ({"columns": "id"}, "list of column names"),
        ({"row": 5}, "condition string"),
        ({"row": "team_id = 1; DROP TABLE issues"}, "multiple statements"),
        ({"row": "SELECT 1"}, "must be a condition"),
        ({"columns": ["team_id"]}, "primary key id hidden"),
        ({"columns": ["id", "nope"]}, "unknown column"),
    ],
)
def test_bad_config(config: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_config("public.issues", config, catalog=CATALOG)
