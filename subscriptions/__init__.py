"""The pure core of pgsift: SQL text to shapes, predicates, policies and routing.

The names below are loaded on first use: `pgsift capture` needs only
`errors`, `pgtext` and `change`, not sqlglot (a tenth of a second to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgsift.subscriptions.catalog import Catalog, Table
    from pgsift.subscriptions.errors import PgsiftError, PolicyError, QueryError
    from pgsift.subscriptions.inner import InnerSet
    from pgsift.subscriptions.policy import BoundPolicy, Policy, policies_from_config
    from pgsift.subscriptions.registry import SetRegistry
    from pgsift.subscriptions.routing import RoutingIndex
    from pgsift.subscriptions.shape import Shape

_EXPORTS: dict[str, str] = {
    "BoundPolicy": "policy",
    "Catalog": "catalog",
    "InnerSet": "inner",
    "PgsiftError": "errors",
    "Policy": "policy",
    "PolicyError": "errors",
    "QueryError": "errors",
    "RoutingIndex": "routing",
    "SetRegistry": "registry",
    "Shape": "shape",
    "Table": "catalog",
    "policies_from_config": "policy",
}

__all__ = [
    "BoundPolicy",
    "Catalog",
    "InnerSet",
    "PgsiftError",
    "Policy",
    "PolicyError",
    "QueryError",
    "RoutingIndex",
    "SetRegistry",
    "Shape",
    "Table",
    "policies_from_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pgsift.subscriptions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pgsift.subscriptions.{module}"), name)
    globals()[name] = value
    return value
