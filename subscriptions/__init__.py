"""The pure core of pgsift: SQL text to shapes, predicates, policies and routing."""

from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.errors import PgsiftError, PolicyError, QueryError
from pgsift.subscriptions.policy import BoundPolicy, Policy, policies_from_config
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape

__all__ = [
    "BoundPolicy",
    "Catalog",
    "PgsiftError",
    "Policy",
    "PolicyError",
    "QueryError",
    "RoutingIndex",
    "Shape",
    "Table",
    "policies_from_config",
]
