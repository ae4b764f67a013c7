"""The `TypeModel` as strawberry types: scalars, enums, inputs, objects and root types.

Every type is made at run time (`strawberry.tools.create_type`, `strawberry.scalar`,
`strawberry.enum`); field types are string annotations resolved in one namespace
when the schema is built, so types may refer to each other (and a `where` input
to itself) in any order.
"""

from __future__ import annotations

import enum
import inspect
import keyword
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NewType, Optional

import strawberry
from strawberry import Info
from strawberry.annotation import StrawberryAnnotation
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import create_type
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.field import StrawberryField
from strawberry.types.scalar import ScalarDefinition

from pgsift.middleware.graphql.model_types import ModelTypes
from pgsift.middleware.graphql.scalars import literal_parser, parser, serializer
from pgsift.subscriptions import typemodel

_BUILT_IN = {"Int": "int", "Float": "float", "String": "str", "Boolean": "bool"}


class StrawberryTypes(ModelTypes):
    """Strawberry's classes for the named types of one model, by GraphQL name."""

    def __init__(
        self, model: typemodel.TypeModel, shared: Mapping[str, Any] | None = None
    ) -> None:
        self.namespace: dict[str, Any] = {"Optional": Optional, "list": list}
        # Strawberry's way to custom scalars: a type in annotations, its definition in
        # the schema's config (`StrawberryConfig(scalar_map=...)`).
        self.scalar_map: dict[object, ScalarDefinition] = {}
        super().__init__(model, shared)

    def root(
        self, name: str, fields: tuple[typemodel.Field, ...], resolvers: typemodel.Resolvers | None
    ) -> type:
        """A root type (`Query`, `Subscription`) with the model's `fields`."""
        built = []
        for item in fields:
            resolver = _adapted(resolvers(item)) if resolvers is not None else None
            made = self._field(item, resolver=resolver, subscription=name == "Subscription")
            made.arguments = [
                StrawberryArgument(
                    python_name=_python_name(arg.name),
                    graphql_name=arg.name,
                    type_annotation=self._annotation(arg.type),
                    description=arg.description,
                )
                for arg in item.args
            ]
            built.append(made)
        return self._typed(create_type(name, built), fields)

    def schema(
        self, *, resolvers: typemodel.Resolvers | None = None, **options: Any
    ) -> strawberry.Schema:
        """A schema of the model alone (its SDL, tests); `options` go to strawberry.Schema."""
        query = self.root("Query", self.model.query, resolvers)
        subscription = self.root("Subscription", self.model.subscription, resolvers)
        config = StrawberryConfig(scalar_map=self.scalar_map)
        return strawberry.Schema(query=query, subscription=subscription, config=config, **options)

    def _add(self, name: str, made: Any) -> None:
        super()._add(name, made)
        self.namespace[_alias(name)] = made

    def _annotation(self, ref: typemodel.TypeRef) -> StrawberryAnnotation:
        return StrawberryAnnotation(_spelled(ref), namespace=self.namespace)

    def _field(
        self,
        item: typemodel.Field,
        *,
        resolver: Callable[..., Any] | None = None,
        subscription: bool = False,
    ) -> StrawberryField:
        made: StrawberryField = strawberry.field(
            resolver=resolver,  # type: ignore[arg-type]
            name=item.name,
            description=item.description,
            is_subscription=subscription,
            default=strawberry.UNSET,
        )
        made.python_name = _python_name(item.name)
        return made

    def _typed(self, made: type, fields: tuple[typemodel.Field, ...]) -> type:
        """`made` with its fields' types set: strawberry reads a type's annotations as it
        creates it, when the types it refers to may not exist yet, so they come after."""
        definition = made.__strawberry_definition__  # type: ignore[attr-defined]
        for made_field, item in zip(definition.fields, fields, strict=True):
            made_field.type_annotation = self._annotation(item.type)
        return made

    def _input(self, model: typemodel.InputType) -> type:
        fields = [self._field(item) for item in model.fields]
        made = create_type(model.name, fields, is_input=True, description=model.description)
        return self._typed(made, model.fields)

    def _object(self, model: typemodel.ObjectType) -> type:
        fields = [self._field(item) for item in model.fields]
        return self._typed(
            create_type(model.name, fields, description=model.description), model.fields
        )

    def _scalar(self, model: typemodel.ScalarType) -> Any:
        python_type = NewType(model.name, object)  # type: ignore[misc]
        self.scalar_map[python_type] = strawberry.scalar(
            name=model.name,
            description=model.description,
            serialize=serializer(model.wire_type),
            parse_value=parser(model.name),
            parse_literal=literal_parser(model.name),
        )
        return python_type

    def _enum(self, model: typemodel.EnumType) -> Any:
        # Member names are made up: a label may be no Python enum member name (`mro`);
        # GraphQL takes each value's name from the label itself.
        members = [(f"v{i}", label) for i, label in enumerate(model.values)]
        python_enum = enum.Enum(model.name, members)  # type: ignore[misc]
        return strawberry.enum(
            python_enum, name=model.name, description=model.description, graphql_name_from="value"
        )


def _adapted(resolver: Callable[..., Any]) -> Callable[..., Any]:
    """`resolver` with the signature strawberry inspects: it passes `root` and `info`
    only to parameters so named, `info` only when annotated as `strawberry.Info`."""
    if inspect.isasyncgenfunction(resolver):

        async def stream(root: Any, info: Info, **arguments: Any) -> AsyncIterator[Any]:
            async for item in resolver(root, info, **arguments):
                yield item

        return stream

    def resolve(root: Any, info: Info, **arguments: Any) -> Any:
        return resolver(root, info, **arguments)

    return resolve


def plain_input(value: Any) -> Any:
    """An input value as strawberry hands it to a resolver -> plain data with GraphQL
    names and enum labels, unset fields left out (what `compile_filter` takes)."""
    if isinstance(value, enum.Enum):
        return value.value
    definition = getattr(value, "__strawberry_definition__", None)
    if definition is not None:
        return {
            field.graphql_name: plain_input(getattr(value, field.python_name))
            for field in definition.fields
            if getattr(value, field.python_name) is not strawberry.UNSET
        }
    if isinstance(value, list):
        return [plain_input(item) for item in value]
    return value


def _alias(name: str) -> str:
    """The namespace key of a type: never a Python keyword or builtin (`None`, `list`)."""
    return f"T_{name}"


def _spelled(ref: typemodel.TypeRef) -> str:
    """A type reference as a Python annotation over the namespace (`Optional[list[T_X]]`)."""
    if isinstance(ref, typemodel.NonNull):
        return _required(ref.of)
    return f"Optional[{_required(ref)}]"


def _required(ref: typemodel.Named | typemodel.ListOf) -> str:
    if isinstance(ref, typemodel.ListOf):
        return f"list[{_spelled(ref.of)}]"
    return _BUILT_IN.get(ref.name) or _alias(ref.name)


def _python_name(name: str) -> str:
    return f"{name}_" if keyword.iskeyword(name) else name
