"""What making a `TypeModel`'s types means for any GraphQL library (`ModelTypes`).

`graphene_types` and `strawberry_types` each say how one kind of type is made
in their library; this says which types are made, and which ones another
schema lends instead (pgsift's generic `Op`, so the typed and the
generic fields share one enum).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from pgsift.middleware.graphql.resolvers import TypedResolvers
from pgsift.subscriptions import typemodel


class ModelTypes(ABC):
    """One library's classes for the named types of one model, by GraphQL name."""

    def __init__(
        self, model: typemodel.TypeModel, shared: Mapping[str, Any] | None = None
    ) -> None:
        """`shared`: types of another schema to use instead of making the model's own of
        that name (pgsift's generic `Op`, so the typed and generic fields share it)."""
        self.model = model
        shared = shared or {}
        self.types: dict[str, Any] = {}
        for scalar in model.scalars:
            self._add(scalar.name, self._scalar(scalar))
        for enum_type in model.enums:
            self._add(enum_type.name, shared.get(enum_type.name) or self._enum(enum_type))
        for input_type in model.inputs:
            self._add(input_type.name, self._input(input_type))
        for object_type in model.objects:
            self._add(object_type.name, self._object(object_type))

    def typed_roots(self, resolvers: TypedResolvers) -> tuple[type | None, type | None]:
        """The model's `Query` and `Subscription` root types with `resolvers` (None for
        a root the model has no fields of), to merge into a served schema."""
        query = subscription = None
        if self.model.query:
            query = self.root("Query", self.model.query, resolvers.for_root("Query"))
        if self.model.subscription:
            subscription = self.root(
                "Subscription", self.model.subscription, resolvers.for_root("Subscription")
            )
        return query, subscription

    @abstractmethod
    def root(
        self, name: str, fields: tuple[typemodel.Field, ...], resolvers: typemodel.Resolvers | None
    ) -> type:
        """A root type (`Query`, `Subscription`) with the model's `fields`."""

    def _add(self, name: str, made: Any) -> None:
        self.types[name] = made

    @abstractmethod
    def _scalar(self, model: typemodel.ScalarType) -> Any:
        """The library's scalar type for `model`."""

    @abstractmethod
    def _enum(self, model: typemodel.EnumType) -> Any:
        """The library's enum type for `model`."""

    @abstractmethod
    def _input(self, model: typemodel.InputType) -> Any:
        """The library's input type for `model`."""

    @abstractmethod
    def _object(self, model: typemodel.ObjectType) -> Any:
        """The library's object type for `model`."""
