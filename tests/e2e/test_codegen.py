"""GraphQL Code Generator and `tsc` over the typed schema: typed rows, not `any`.

The issue tracker's typed SDL (from a real database and its policies) goes to a
file; GraphQL Code Generator (typescript + typescript-operations, pinned in
tests/e2e/js) generates types for the urql + graphql-ws client in
`tests/e2e/js/typed/live.ts`, and `tsc --noEmit` type-checks it. Copies of the
client with one mistake each must fail to type-check, and a document selecting
a field the schema lacks must fail to generate.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.node import JS, NODE, TYPED, run_tool
from tests.middleware.graphql.issue_tracker import issue_tracker_sdl

# file -> (the text changed in live.ts, its replacement, what tsc must say)
MISTAKES = {
    "wrong_field.ts": ("title: row.title", "title: row.titel",
                       "Property 'titel' does not exist"),
    "wrong_scalar.ts": ("const id: string = change.key.id", "const id: number = change.key.id",
                        "Type 'string' is not assignable to type 'number'"),
    "wrong_filter.ts": ('teamId: { _eq: "1" }', 'teamid: { _eq: "1" }',
                        "'teamid' does not exist in type 'IssuesBoolExp'"),
    "wrong_label.ts": ('"in_progress"]', '"in progress"]',
                       "Type '\"in progress\"' is not assignable to type 'IssueStatus'"),
}  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path, database_url: str) -> Path:
    if NODE is None or not (JS / "node_modules" / "@graphql-codegen" / "cli").exists():
        pytest.fail("node and tests/e2e/js/node_modules are needed (.ci/setup runs npm ci)")
    for name in ("codegen.yml", "live.ts", "tsconfig.json"):
        shutil.copy(TYPED / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(JS / "node_modules", target_is_directory=True)
    (tmp_path / "schema.graphql").write_text(issue_tracker_sdl(database_url), encoding="utf-8")
    return tmp_path


def _errors(output: str) -> dict[str, list[str]]:
    """tsc's errors by file name."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = re.match(r"(\S+?\.ts)\(\d+,\d+\): error (TS\d+: .*)", line)
        if match:
            found.setdefault(Path(match.group(1)).name, []).append(match.group(2))
    return found


def test_codegen_types_the_live_query_and_tsc_catches_mistakes(workdir: Path) -> None:
    generated = run_tool("graphql-codegen", "--config", "codegen.yml", cwd=workdir)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    operations = (workdir / "generated.ts").read_text(encoding="utf-8")
    assert "export type IssuesLiveSubscription = " in operations
    assert "key: { id: string }" in operations  # BigInt: the wire form's type, not any
    assert re.search(r"\bany\b(?! text)", operations) is None

    live = (workdir / "live.ts").read_text(encoding="utf-8")
    for name, (text, mistake, _) in MISTAKES.items():
        assert text in live, text
        (workdir / name).write_text(live.replace(text, mistake), encoding="utf-8")
    checked = run_tool("tsc", "-p", "tsconfig.json", cwd=workdir)
    errors = _errors(checked.stdout)
    assert "live.ts" not in errors, errors["live.ts"]
    for name, (_, _, message) in MISTAKES.items():
        assert any(message in error for error in errors.get(name, [])), (name, errors, checked)
    assert set(errors) == set(MISTAKES), checked.stdout


def test_codegen_refuses_a_document_with_an_unknown_field(workdir: Path) -> None:
    live = workdir / "live.ts"
    text = live.read_text(encoding="utf-8")
    live.write_text(text.replace("teamId title", "teamId titel"), encoding="utf-8")
    generated = run_tool("graphql-codegen", "--config", "codegen.yml", cwd=workdir)
    assert generated.returncode != 0
    assert 'Cannot query field "titel" on type "Issues"' in generated.stdout + generated.stderr
