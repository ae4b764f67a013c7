"""A policy reading an inner select is refused by the batch loader, never misjudged."""

from __future__ import annotations

import pytest

from pgsift.middleware.errors import LoaderError
from pgsift.middleware.loader.request import PolicyBinder
from pgsift.subscriptions import Catalog, policies_from_config

CATALOG = Catalog.from_dict(
    {
        "items": {"columns": {"id": "int8", "team_id": "int4"}, "primary_key": ["id"]},
        "grants": {"columns": {"team_id": "int4", "user_id": "text"},
                   "primary_key": ["team_id", "user_id"]},
    }
)  # fmt: skip


def test_a_policy_with_an_inner_select_is_refused() -> None:
    rule = "team_id IN (SELECT team_id FROM grants WHERE user_id = auth.sub)"
    policies = policies_from_config({"items": {"row": rule}}, catalog=CATALOG)
    binder = PolicyBinder(CATALOG, policies)
    with pytest.raises(LoaderError, match="reads an inner select"):
        binder.bind("public.items", {"sub": "u1"})
