"""The SDL of the typed schema for a catalog and its policies (codegen, docs, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pgsift.middleware.graphql.strawberry_types import StrawberryTypes
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.typed_schema import typed_schema


def typed_sdl(
    catalog: Catalog,
    policies: Mapping[str, Policy] | None = None,
    tables: Iterable[str] | None = None,
) -> str:
    """The typed schema's SDL: the tables a client may read (see `typed_schema`)."""
    return StrawberryTypes(typed_schema(catalog, policies, tables)).schema().as_str() + "\n"
