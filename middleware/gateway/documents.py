"""Parsed and validated GraphQL documents, cached per schema (bounded LRU).

Every `sync` subscription of a client library sends the same document text
(the SQL travels in the variables), and validating it costs milliseconds: with
20,000 subscriptions arriving at once that was nearly all of a gateway's time.
A `DocumentCache` parses and validates each distinct text once and keeps the
result (the document, or its syntax error, and its validation errors) for the
`size` texts used last. Texts longer than `MAX_CACHED_CHARS` (a big inline
string) are checked every time instead of being kept.

Both transports use it: strawberry's through the `CachedDocuments` extension,
the graphql-core one (`transport_ws.py`) directly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

# Distinct document texts kept per schema.
DEFAULT_SIZE = 512
# Longer texts are not kept (the cache's memory stays bounded by size x this).
MAX_CACHED_CHARS = 16_384


@dataclass(frozen=True, slots=True)
class CheckedDocument:
    """A document text, parsed (or its syntax error) and validated."""

    document: DocumentNode | None
    syntax_error: GraphQLSyntaxError | None
    errors: tuple[GraphQLError, ...]  # validation errors; empty when valid


class DocumentCache:
    """Parse + validate against `schema` with `rules`, once per distinct text."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_tokens: int | None,
        rules: Sequence[type[ASTValidationRule]] = specified_rules,
        size: int = DEFAULT_SIZE,
    ) -> None:
        self.schema = schema
        self.max_tokens = max_tokens
        self.rules = tuple(rules)
        self.size = size
        self._entries: OrderedDict[str, CheckedDocument] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def check(self, query: str) -> CheckedDocument:
        """`query` parsed (at most `max_tokens` tokens) and validated."""
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            self.hits += 1
            return entry
        self.misses += 1
        entry = self._check(query)
        if len(query) <= MAX_CACHED_CHARS:
            self._entries[query] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry

    def _check(self, query: str) -> CheckedDocument:
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLSyntaxError as exc:
            return CheckedDocument(None, exc, ())
        return CheckedDocument(document, None, tuple(validate(self.schema, document, self.rules)))


class CachedDocuments(SchemaExtension):
    """A strawberry extension that takes documents and their validation from a
    `DocumentCache` (built with the rules strawberry validates with), instead of
    parsing and validating every operation. Texts that do not parse are left to
    strawberry, which reports the error its own way."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            checked = self.cache.check(context.query)
            if checked.document is not None:
                context.graphql_document = checked.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        # Only when strawberry would validate with the very rules the cache used.
        if (
            context.query
            and context.pre_execution_errors is None
            and context.graphql_document is not None
            and self.cache.rules == strawberry_rules(context.validation_rules)
        ):
            checked = self.cache.check(context.query)
            if checked.document is context.graphql_document:
                context.pre_execution_errors = list(checked.errors)
        yield


def strawberry_rules(
    rules: Sequence[type[ASTValidationRule]] = specified_rules,
) -> tuple[type[ASTValidationRule], ...]:
    """The rules strawberry validates with, given its execution context's rules."""
    return (*rules, MaybeNullValidationRule, OneOfInputValidationRule)
