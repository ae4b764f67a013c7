"""Table mirrors of nested sets: shared by structure, kept from changes, bounded, dropped with
the sets when stale. (Their exactness against Postgres: `test_moves_oracle.py`.)"""

from __future__ import annotations

from typing import Any

from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.registry import SetRegistry

CATALOG = Catalog.from_dict(
    {
        "issues": {"columns": {"id": "int8", "team_id": "int4"}, "primary_key": ["id"]},
        "projects": {"columns": {"id": "int8", "team_id": "int4", "lead": "text",
                                 "notes": "text"}, "primary_key": ["id"]},
        "members": {"columns": {"id": "int8", "user_id": "text", "org": "int4"},
                    "primary_key": ["id"]},
    }
)  # fmt: skip
LED = (
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE lead IN"
    " (SELECT user_id FROM members WHERE org = $1))"
)
PROJECTS = [{"id": 1, "team_id": 10, "lead": "ann", "notes": "x"},
            {"id": 2, "team_id": 20, "lead": "bob", "notes": "y"}]  # fmt: skip
MEMBERS = [{"id": 1, "user_id": "ann", "org": 1}, {"id": 2, "user_id": "bob", "org": 2}]


def attach(registry: SetRegistry, org: int) -> Shape:
    """Acquire and load one org's shape, as the gateway's `set_loading` does."""
    shape = Shape.parse(LED, [org], catalog=CATALOG)
    needed = registry.acquire(shape.inner_sets)
    for mirror in registry.needed_mirrors(needed):
        assert mirror.table == "public.projects"
        assert mirror.columns == ("id", "team_id", "lead")  # not `notes`: nothing reads it
        assert registry.load_mirror(mirror, PROJECTS)
    members, projects = needed
    assert registry.load(members, [m for m in MEMBERS if members.matches(m)])
    assert registry.load(projects, [p for p in PROJECTS if projects.matches(p, registry)])
    return shape


def project(op: str, row: dict[str, Any], old: dict[str, Any] | None = None) -> Change:
    key = {"id": (old or row)["id"]}
    return Change("public.projects", op, key, None if op == "delete" else row, old)


def test_sets_of_one_structure_share_one_mirror_held_while_one_reads_it() -> None:
    registry = SetRegistry()
    one, two = attach(registry, 1), attach(registry, 2)
    assert registry.needed_mirrors(two.inner_sets) == []
    assert registry.state(one.inner_sets[0].key).members == {10}
    assert registry.state(two.inner_sets[0].key).members == {20}
    with_mirror = registry.approx_bytes
    registry.release(one.inner_sets)
    assert registry.materialized(two.inner_sets[0].key)
    registry.release(two.inner_sets)
    assert registry.approx_bytes == 0 < with_mirror


def test_a_members_change_moves_the_mirrored_rows_and_a_project_change_moves_itself() -> None:
    registry = SetRegistry()
    shape = attach(registry, 1)
    (projects,) = shape.inner_sets
    # bob joins org 1: his project's team enters, judged from the mirror.
    bob = {"id": 2, "user_id": "bob", "org": 1}
    (_, projects_delta) = registry.apply([Change("public.members", "update", {"id": 2}, bob, None)])
    assert projects_delta.key == projects.key and projects_delta.added == {20}
    # A project moves team: the mirror and the set follow (no old image: the key only).
    moved = {"id": 2, "team_id": 30, "lead": "bob", "notes": "y"}
    (delta,) = registry.apply([project("update", moved)])
    assert (delta.added, delta.removed) == ({30}, {20})
    # A column nothing reads changes: nothing moves.
    assert registry.apply([project("update", {**moved, "notes": "z"})]) == []
    # Then bob leaves org 1 again: team 30 leaves, found by his still-mirrored lead.
    (_, delta) = registry.apply([Change("public.members", "delete", {"id": 2}, None, None)])
    assert delta.removed == {30} and registry.state(projects.key).members == {10}


def test_a_mirror_past_the_bound_drops_its_sets_and_is_loaded_again() -> None:
    registry = SetRegistry()
    shape = attach(registry, 1)
    (projects,) = shape.inner_sets
    registry.max_bytes = registry.approx_bytes + 100
    rows = [{"id": n, "team_id": n, "lead": "cat", "notes": ""} for n in range(3, 40)]
    registry.apply([project("insert", row) for row in rows])
    assert projects.key in registry.over_bound and not registry.materialized(projects.key)
    (mirror,) = registry.needed_mirrors(shape.inner_sets)
    assert not registry.load_mirror(mirror, PROJECTS + rows)  # still too big
    registry.max_bytes = 10**9
    assert registry.load_mirror(mirror, PROJECTS + rows)


def test_dropping_everything_drops_the_mirrors() -> None:
    registry = SetRegistry()
    shape = attach(registry, 1)
    registry.drop_all()
    assert registry.approx_bytes == 0
    assert len(registry.needed_mirrors(shape.inner_sets)) == 1
