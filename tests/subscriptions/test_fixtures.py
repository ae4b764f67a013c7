"""SQL fixture files: accepted queries with their normalized form, refused ones with their error.

`PGSIFT_RECORD_FIXTURES=1` rewrites the expectations from the current behaviour
(review the diff before keeping it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgsift.subscriptions import Catalog, QueryError, Shape, policies_from_config
from pgsift.subscriptions.wire import untyped_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "subscriptions"
RECORD = os.environ.get("PGSIFT_RECORD_FIXTURES") == "1"
DIRECTIVES = ("-- params:", "-- policies", "-- values:", "=> ", "!! ")


@dataclass
class Case:
    sql: str
    params: list[Any]
    policies: bool
    expected: str | None  # normalized form, or the error message
    values: Any

    def render(self, expected: str, values: Any, marker: str) -> str:
        lines = [self.sql]
        if self.params:
            lines.append(f"-- params: {json.dumps(self.params, ensure_ascii=False)}")
        if self.policies:
            lines.append("-- policies")
        lines.append(f"{marker}{expected}")
        if marker == "=> ":
            lines.append(f"-- values: {json.dumps(values, ensure_ascii=False)}")
        return "\n".join(lines)


def read_cases(path: Path) -> tuple[list[str], list[Case]]:
    header: list[str] = []
    cases: list[Case] = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.splitlines()
        if all(line.startswith("--") for line in lines):
            header.append(block)
            continue
        query = [line for line in lines if not line.startswith(DIRECTIVES)]
        directive = {
            prefix: line[len(prefix) :].strip()
            for line in lines
            for prefix in DIRECTIVES
            if line.startswith(prefix)
        }
        cases.append(
            Case(
                sql="\n".join(query),
                params=json.loads(directive.get("-- params:", "[]")),
                policies="-- policies" in directive,
                expected=directive.get("=> ", directive.get("!! ")),
                values=json.loads(directive["-- values:"]) if "-- values:" in directive else None,
            )
        )
    return header, cases


def load_setup() -> tuple[Catalog, dict[str, Any], dict[str, Any]]:
    spec = json.loads((FIXTURES / "catalog.json").read_text(encoding="utf-8"))
    catalog = Catalog.from_dict(spec["tables"], enums=spec["enums"])
    return catalog, policies_from_config(spec["policies"], catalog=catalog), spec["claims"]


CATALOG, POLICIES, CLAIMS = load_setup()


def parse(case: Case) -> Shape:
    return Shape.parse(
        case.sql,
        params=case.params,
        catalog=CATALOG,
        claims=CLAIMS if case.policies else None,
        policies=POLICIES if case.policies else None,
    )


def _record(name: str, outcome: Any) -> None:
    path = FIXTURES / name
    header, cases = read_cases(path)
    blocks = list(header)
    for case in cases:
        blocks.append(outcome(case))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def _accepted(case: Case) -> str:
    shape = parse(case)
    return case.render(shape.normalized, [untyped_json(v) for v in shape.params], "=> ")


def _refused(case: Case) -> str:
    try:
        parse(case)
    except QueryError as exc:
        return case.render(str(exc), None, "!! ")
    return case.render("<accepted!>", None, "!! ")


if RECORD:
    _record("accepted.sql", _accepted)
    _record("refused.sql", _refused)

ACCEPTED = read_cases(FIXTURES / "accepted.sql")[1]
REFUSED = read_cases(FIXTURES / "refused.sql")[1]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.sql.splitlines()[0][:60] for c in ACCEPTED])
def test_accepted(case: Case) -> None:
    shape = parse(case)
    assert shape.normalized == case.expected
    assert [untyped_json(v) for v in shape.params] == case.values


@pytest.mark.parametrize("case", REFUSED, ids=[c.sql.splitlines()[0][:60] for c in REFUSED])
def test_refused(case: Case) -> None:
    with pytest.raises(QueryError) as info:
        parse(case)
    assert str(info.value) == case.expected
