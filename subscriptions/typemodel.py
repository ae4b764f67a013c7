"""The typed GraphQL schema as plain data, for any GraphQL library to build.

A `TypeModel` lists scalars, enums, input and object types and the root
fields, with GraphQL names and type references only; `typed_schema` builds
it from the catalog and the policies, and the builders in
`pgsift.middleware.graphql` turn it into strawberry or graphene types, so both
libraries serve the same SDL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.naming import TableNames
from pgsift.subscriptions.typemap import ColumnType


@dataclass(frozen=True, slots=True)
class Named:
    """A reference to a named type (nullable)."""

    name: str


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of `of` (nullable)."""

    of: TypeRef


@dataclass(frozen=True, slots=True)
class NonNull:
    """`of`, never null."""

    of: Named | ListOf


TypeRef = Named | ListOf | NonNull


def named_type(ref: TypeRef) -> str:
    """The named type at the bottom of a reference: `[Int!]!` -> `Int`."""
    while not isinstance(ref, Named):
        ref = ref.of
    return ref.name


def required(ref: Named | ListOf) -> NonNull:
    return NonNull(ref)


@dataclass(frozen=True, slots=True)
class Argument:
    name: str
    type: TypeRef
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """A field of an object or input type, or a root field (with `args`)."""

    name: str
    type: TypeRef
    description: str | None = None
    args: tuple[Argument, ...] = ()


# A root field's resolver `(root, info, **arguments)`, made by the caller of a builder
# for a field of the model (none: the field only describes the schema, e.g. for its
# SDL). A function for a query field, an async generator function for a subscription.
Resolvers = Callable[[Field], Callable[..., Any]]


@dataclass(frozen=True, slots=True)
class FieldsType:
    """A named type made of `fields`: what an object and an input type are alike in."""

    name: str
    fields: tuple[Field, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectType(FieldsType):
    """An object type: what a field returns."""


@dataclass(frozen=True, slots=True)
class InputType(FieldsType):
    """An input object type: what an argument takes."""


@dataclass(frozen=True, slots=True)
class EnumType:
    """An enum whose GraphQL value names are its values (a Postgres enum's labels)."""

    name: str
    values: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ScalarType:
    """A custom scalar: its values are the wire form of Postgres type `wire_type`."""

    name: str
    wire_type: str
    description: str


@dataclass(frozen=True, slots=True)
class TypedTable:
    """One readable table: its names and the GraphQL view of each readable column."""

    names: TableNames
    columns: Mapping[str, ColumnType]  # readable column -> type, in table order
    primary_key: tuple[str, ...]

    @property
    def table(self) -> str:
        return self.names.table


@dataclass(frozen=True, slots=True)
class TypeModel:
    """Every type and root field of the typed schema, in a stable order."""

    scalars: tuple[ScalarType, ...]
    enums: tuple[EnumType, ...]
    inputs: tuple[InputType, ...]
    objects: tuple[ObjectType, ...]
    query: tuple[Field, ...]
    subscription: tuple[Field, ...]
    tables: Mapping[str, TypedTable]  # by schema-qualified table name

    def types(self) -> Iterator[ScalarType | EnumType | InputType | ObjectType]:
        """Every named type but the root types."""
        yield from self.scalars
        yield from self.enums
        yield from self.inputs
        yield from self.objects

    def table(self, name: str) -> TypedTable:
        """`issues` or `public.issues`; KeyError if the table is not readable."""
        return self.tables[name if "." in name else f"public.{name}"]
