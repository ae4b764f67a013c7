"""The `TypeModel` as graphene 3 types: scalars, enums, inputs, objects and root types.

Classes are made at run time; a field refers to another type through a
function of its name, so types may refer to each other (and a `where` input to
itself) in any order. Every field, argument and type carries its GraphQL name
explicitly, so a schema with `auto_camelcase` on keeps them as the model says,
and attributes are named like fields, so an input arrives as a dict keyed by
GraphQL names (`plain_input` turns it into plain data for `compile_filter`).
"""

from __future__ import annotations

import enum
import keyword
from typing import Any

import graphene  # type: ignore[import-untyped]

from pgsift.middleware.graphql.model_types import ModelTypes
from pgsift.middleware.graphql.scalars import literal_parser, parser, serializer
from pgsift.subscriptions import typemodel

_BUILT_IN: dict[str, Any] = {
    "Int": graphene.Int,
    "Float": graphene.Float,
    "String": graphene.String,
    "Boolean": graphene.Boolean,
    "ID": graphene.ID,
}


class GrapheneTypes(ModelTypes):
    """graphene's classes for the named types of one model, by GraphQL name."""

    def root(
        self, name: str, fields: tuple[typemodel.Field, ...], resolvers: typemodel.Resolvers | None
    ) -> type:
        """A root type (`Query`, `Subscription`) with the model's `fields`."""
        attrs: dict[str, Any] = {"Meta": _meta(name, None)}
        streams = name == "Subscription"
        for item in fields:
            resolver = resolvers(item) if resolvers is not None else None
            if streams and resolver is not None:
                # graphene streams from `subscribe_<field>`; each item is the field's value.
                attrs[f"subscribe_{item.name}"] = staticmethod(resolver)
            attrs[item.name] = graphene.Field(
                self._type(item.type),
                name=item.name,
                description=item.description,
                args={
                    arg.name: graphene.Argument(
                        self._type(arg.type), name=arg.name, description=arg.description
                    )
                    for arg in item.args
                },
                resolver=None if streams else resolver,
            )
        return type(name, (graphene.ObjectType,), attrs)

    def schema(
        self, *, resolvers: typemodel.Resolvers | None = None, **options: Any
    ) -> graphene.Schema:
        """A schema of the model alone (its SDL, tests); `options` go to graphene.Schema."""
        return graphene.Schema(
            query=self.root("Query", self.model.query, resolvers),
            subscription=self.root("Subscription", self.model.subscription, resolvers),
            **options,
        )

    def _type(self, ref: typemodel.TypeRef) -> Any:
        """A graphene type (structure) for `ref`; named types are looked up when used."""
        if isinstance(ref, typemodel.NonNull):
            return graphene.NonNull(self._type(ref.of))
        if isinstance(ref, typemodel.ListOf):
            return graphene.List(self._type(ref.of))
        return self._named(ref)

    def _named(self, ref: typemodel.Named) -> Any:
        built_in = _BUILT_IN.get(ref.name)
        if built_in is not None:
            return built_in
        return lambda: self.types[ref.name]

    def _input(self, model: typemodel.InputType) -> type:
        attrs: dict[str, Any] = {"Meta": _meta(model.name, model.description)}
        for item in model.fields:
            attrs[item.name] = graphene.InputField(
                self._type(item.type), name=item.name, description=item.description
            )
        return type(model.name, (graphene.InputObjectType,), attrs)

    def _object(self, model: typemodel.ObjectType) -> type:
        attrs: dict[str, Any] = {"Meta": _meta(model.name, model.description)}
        for item in model.fields:
            attrs[_python_name(item.name)] = graphene.Field(
                self._type(item.type), name=item.name, description=item.description
            )
        return type(model.name, (graphene.ObjectType,), attrs)

    def _scalar(self, model: typemodel.ScalarType) -> type:
        attrs = {
            "Meta": _meta(model.name, model.description),
            "serialize": staticmethod(serializer(model.wire_type)),
            "parse_value": staticmethod(parser(model.name)),
            "parse_literal": staticmethod(literal_parser(model.name)),
        }
        return type(model.name, (graphene.Scalar,), attrs)

    def _enum(self, model: typemodel.EnumType) -> Any:
        # graphene names GraphQL values after Python members: the model only makes enums
        # whose labels Python takes as member names.
        members = [(label, label) for label in model.values]
        python_enum = enum.Enum(model.name, members)  # type: ignore[misc]
        python_enum.__doc__ = model.description  # not "An enumeration." when there is none
        return graphene.Enum.from_enum(
            python_enum, name=model.name, description=model.description
        )


def plain_input(value: Any) -> Any:
    """An input value as graphene hands it to a resolver -> plain data with GraphQL
    names and enum labels (what `compile_filter` takes)."""
    if isinstance(value, dict):
        return {key: plain_input(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_input(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _python_name(name: str) -> str:
    # graphene makes a dataclass of an object type: its attributes cannot be keywords.
    return f"{name}_" if keyword.iskeyword(name) else name


def _meta(name: str, description: str | None) -> type:
    return type("Meta", (), {"name": name, "description": description})
