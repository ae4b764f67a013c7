"""`x [NOT] IN (constants)` and `x op ANY / ALL (array)`: lists of constants, typed together.

An IN list takes the type of its left side, `ARRAY[...]` is typed on its own,
and `= ANY` of constants is an IN list (one hashed set); the other operators
keep the array's elements.
"""

from __future__ import annotations

from sqlglot import exp

from pgsift.subscriptions import coerce
from pgsift.subscriptions.domains import TEXT_TYPES, KeySpec, apply_key, comparison_keys
from pgsift.subscriptions.ir import Expr, InList, Quantified, Slot, type_of
from pgsift.subscriptions.leaves import LeafAnalyzer
from pgsift.subscriptions.operands import (
    Operand,
    Pending,
    Typed,
    canonical_json,
    common_type,
    convert,
    operand_type,
    shared_set,
)


class ListAnalyzer(LeafAnalyzer):
    """Types IN lists and ANY / ALL comparisons."""

    def in_list(self, node: exp.In) -> Expr:
        if not node.expressions:
            raise self.fail("IN needs a list of constants", node)
        arg = self.operand(node.this)
        elements = [self.operand(item) for item in node.expressions]
        for item, element in zip(node.expressions, elements, strict=True):
            if not isinstance(element, Pending | Typed):
                raise self.fail("IN list elements must be constants", item)
        constants = [e for e in elements if isinstance(e, Pending | Typed)]
        arg_expr, arg_key, typed, common = self.against_constants(arg, constants, "IN", node)
        keys = comparison_keys(type_of(arg_expr), common, self.enums)
        element_key = keys[1] if keys is not None else KeySpec("id")
        slot = self.set_slot(typed, common, element_key)
        return InList(arg_expr, slot, arg_key, negated=bool(node.args.get("negate")))

    def quantified(
        self,
        op: str,
        left: exp.Expression,
        array: exp.Expression,
        node: exp.Expression,
        *,
        all_: bool,
    ) -> Expr:
        word = "ALL" if all_ else "ANY"
        while isinstance(array, exp.Paren):
            array = array.this
        lhs = self.operand(left)
        if isinstance(array, exp.Array):
            items = [self.operand(item) for item in array.expressions]
            constants = [i for i in items if isinstance(i, Pending | Typed)]
            if len(constants) != len(items):
                raise self.fail("ARRAY[...] elements must be constants", array)
            # ARRAY[...] is typed on its own: unknown elements become text unless a typed
            # element gives the array its type (unlike IN, which looks at the left side).
            first = next((c for c in constants if isinstance(c, Typed)), None)
            element_type = (
                common_type([c.type for c in constants if isinstance(c, Typed)])
                if first
                else "text"
            )
            constants = [
                self.typed(c, element_type) if isinstance(c, Pending) else c for c in constants
            ]
            lhs_expr, lkey, typed, common = self.against_constants(
                lhs, constants, word, node, element=element_type
            )
            keys = comparison_keys(operand_type(lhs_expr), common, self.enums)
            if op == "=" and not all_ and keys is not None:
                return InList(lhs_expr, self.set_slot(typed, common, keys[1]), lkey, negated=False)
            return self.array_slot(op, lhs_expr, lkey, typed, common, keys, all_)
        source = self.operand(array)
        if isinstance(source, Pending):
            element = operand_type(lhs) if not isinstance(lhs, Pending) else "text"
            source = self.typed(source, f"{element}[]")
        array_type = operand_type(source)
        if not coerce.is_array(array_type):
            raise self.fail(f"op {word} (array) requires an array, not {array_type}", array)
        element = array_type[:-2]
        if isinstance(lhs, Pending):
            lhs = self.typed(lhs, element)
        self.comparable(operand_type(lhs), element, node)
        keys = comparison_keys(operand_type(lhs), element, self.enums)
        if keys is None:
            raise self.fail(f"operator does not exist: {operand_type(lhs)} {op} {element}", node)
        lhs_expr = self.as_expr(lhs, keys[0])
        if isinstance(source, Typed):
            elements = (
                None
                if source.value is None
                else [Typed(v, element, source.label, source.position) for v in source.value]
            )
            if op == "=" and not all_ and elements is not None:
                slot = self.set_slot(elements, element, keys[1])
                return InList(lhs_expr, slot, keys[0], negated=False)
            return self.array_slot(op, lhs_expr, keys[0], elements, element, keys, all_)
        return Quantified(op, lhs_expr, source, keys[0], keys[1], all_)

    def array_slot(
        self,
        op: str,
        lhs: Expr,
        lkey: KeySpec,
        elements: list[Typed] | None,
        element: str,
        keys: tuple[KeySpec, KeySpec] | None,
        all_: bool,
    ) -> Expr:
        ekey = keys[1] if keys is not None else KeySpec("id")
        if elements is None:
            slot = self.slots.add(None, f"{element}[]", None)
        else:
            typed = [e.value for e in elements]
            slot = self.slots.add(typed, f"{element}[]", tuple(apply_key(ekey, v) for v in typed))
        return Quantified(op, lhs, slot, lkey, ekey, all_)

    def against_constants(
        self,
        arg: Operand,
        constants: list[Pending | Typed],
        word: str,
        node: exp.Expression,
        element: str | None = None,
    ) -> tuple[Expr, KeySpec, list[Typed], str]:
        """Type `arg` and a list of constants to one common type, as IN / ARRAY[] do.

        `element`: the type of an `ARRAY[...]` (typed on its own, without `arg`).
        """
        if isinstance(arg, Pending):
            first = next((c for c in constants if isinstance(c, Typed)), None)
            arg = self.typed(arg, first.type if first is not None else "text")
        arg_type = operand_type(arg)
        typed = [self.typed(c, arg_type) if isinstance(c, Pending) else c for c in constants]
        common = common_type([arg_type, *(t.type for t in typed)])
        if arg_type in TEXT_TYPES and common in TEXT_TYPES:
            # Strings differ between bpchar and text operators, so the operator must be
            # Postgres's own: `x = ANY (ARRAY[...])` compares with the array's type, and
            # an IN list of one item is the plain `x = item` (longer lists take x's type).
            if element is not None:
                common = element
            elif len(typed) == 1:
                common = typed[0].type
        self.comparable(arg_type, common, node)
        for item in typed:
            if comparison_keys(common, item.type, self.enums) is None:
                raise self.fail(f"operator does not exist: {arg_type} {word} {item.type}", node)
        keys = comparison_keys(arg_type, common, self.enums)
        if keys is None:
            raise self.fail(f"operator does not exist: {arg_type} {word} {common}", node)
        try:
            converted = [Typed(convert(t, common), common, t.label, t.position) for t in typed]
        except coerce.CoercionError as exc:  # e.g. a numeric past the double range
            raise self.fail(str(exc), node) from None
        return self.as_expr(arg, keys[0]), keys[0], converted, common

    def set_slot(self, typed: list[Typed], element: str, key: KeySpec) -> Slot:
        """An IN list / `= ANY` array: the canonical (sorted, unique) values and their keys."""
        present = {canonical_json(t.value): t.value for t in typed if t.value is not None}
        ordered = [present[k] for k in sorted(present)]
        has_null = len(present) < len(typed) and any(t.value is None for t in typed)
        runtime = shared_set((frozenset(apply_key(key, v) for v in ordered), has_null))
        return self.slots.add(ordered + ([None] if has_null else []), f"{element}[]", runtime)
