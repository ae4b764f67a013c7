"""`[mutators]` in pgsift.toml: loaded and checked at start-up, access rules over claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.mutations.access import ClaimRule
from pgsift.middleware.mutations.registry import load_mutators
from pgsift.middleware.settings import load_settings
from tests.middleware.mutations import app

PREFIX = "tests.middleware.mutations.app"


def test_mutators_load_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text(f'''
[mutators]
add_note = "{PREFIX}:add_note"

[mutators.admin_only]
function = "{PREFIX}:add_note"
claims = {{ role = ["admin", "owner"], team_ids = true }}

[mutations]
max_batch = 7
''')
    settings = load_settings(config, environ={})
    assert settings.mutations_max_batch == 7
    mutators = load_mutators(settings.mutators)
    assert sorted(mutators) == ["add_note", "admin_only"]
    assert mutators["add_note"].function is app.add_note
    assert mutators["add_note"].access == ClaimRule()
    rule = mutators["admin_only"].access
    assert rule.refusal({"role": "owner", "team_ids": []}) is None
    assert rule.refusal({"role": "member", "team_ids": [1]}) == (
        "not allowed: this mutator needs claim role in ['admin', 'owner']"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"x": "no_such_module_anywhere:fn"}, "mutator x: cannot import module"),
        ({"x": f"{PREFIX}:missing"}, f"mutator x: module '{PREFIX}' has no 'missing'"),
        ({"x": f"{PREFIX}:NOT_CALLABLE"}, "must be a plain function"),
        ({"x": f"{PREFIX}:coroutine"}, "must be a plain function"),
        ({"x": f"{PREFIX}:wrong_arity"}, "must accept (conn, args, claims)"),
        ({"x": PREFIX}, 'is not "module:function"'),
        ({"x": 5}, 'expected "module:function"'),
        ({"1x": f"{PREFIX}:add_note"}, "a name is letters"),
        ({"x": {"claims": {}}}, "function = "),
        ({"x": {"function": f"{PREFIX}:add_note", "role": "admin"}}, "unknown key(s) role"),
        ({"x": {"function": f"{PREFIX}:add_note", "claims": ["role"]}}, "table of claim"),
        ({"x": {"function": f"{PREFIX}:add_note", "claims": {"role": False}}}, "expected true"),
        ({"x": {"function": f"{PREFIX}:add_note", "claims": {"role": []}}}, "expected true"),
        ({"x": {"function": f"{PREFIX}:add_note", "claims": {"n": 1.5}}}, "expected true"),
    ],
)
def test_a_bad_mutator_is_a_config_error_naming_it(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mutators(config)
    assert message in str(caught.value)


def test_a_mutators_section_that_is_not_a_table(tmp_path: Path) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text('mutators = "x"\n')
    with pytest.raises(ConfigError, match="setting mutators"):
        load_settings(config, environ={})


@pytest.mark.parametrize(
    ("condition", "claims", "allowed"),
    [
        (True, {"role": "x"}, True),
        (True, {"role": None}, False),
        (True, {}, False),
        ("admin", {"role": "admin"}, True),
        ("admin", {"role": "Admin"}, False),
        ("admin", {"role": ["user", "admin"]}, True),
        (["a", "b"], {"role": "b"}, True),
        (["a", "b"], {"role": ["c"]}, False),
        (3, {"role": [1, 3]}, True),
        (3, {"role": "3"}, False),  # a string claim is not the number
        (1, {"role": True}, False),  # nor is a boolean
    ],
)
def test_claim_conditions(condition: Any, claims: dict[str, Any], allowed: bool) -> None:
    rule = ClaimRule.from_config("m", {"role": condition})
    assert (rule.refusal(claims) is None) is allowed
