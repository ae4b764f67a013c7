"""The schema's directives as the JavaScript tooling of today reads them.

graphql-core 3.2.14 lets `@deprecated` stand on directive definitions too (a
draft of the spec): its introspection lists the location `DIRECTIVE_DEFINITION`,
which graphql-js 16 (what GraphQL Code Generator, Apollo and urql tooling parse
schemas with) does not know, so generating types from pgsift's live schema
failed with `Syntax Error: Unexpected Name "DIRECTIVE_DEFINITION"`. The served
schemas keep `@deprecated` on every location graphql-js knows.
"""

from __future__ import annotations

from graphql import DirectiveLocation, GraphQLDirective, GraphQLSchema

# Locations newer than the June 2018 spec that graphql-js 16 implements.
_UNKNOWN_TO_GRAPHQL_JS = frozenset({DirectiveLocation.DIRECTIVE_DEFINITION})


def for_graphql_js(schema: GraphQLSchema) -> GraphQLSchema:
    """`schema` (changed in place) with no directive on a location graphql-js 16 lacks."""
    directives = []
    for directive in schema.directives:
        if _UNKNOWN_TO_GRAPHQL_JS & set(directive.locations):
            directive = GraphQLDirective(
                name=directive.name,
                locations=[loc for loc in directive.locations if loc not in _UNKNOWN_TO_GRAPHQL_JS],
                args=directive.args,
                is_repeatable=directive.is_repeatable,
                description=directive.description,
            )
        directives.append(directive)
    schema.directives = tuple(directives)
    return schema
