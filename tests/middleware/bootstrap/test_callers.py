"""Who a caller is for `bootstrap_max_per_caller`, and the count of its bootstraps."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgsift.middleware.bootstrap.callers import CallerSlots, caller_of
from pgsift.middleware.errors import TooManyRequestsError
from pgsift.middleware.settings import load_settings


def test_a_caller_is_its_subject_whatever_the_token() -> None:
    first = {"sub": "u1", "iss": "app", "exp": 1, "iat": 0, "team_ids": [1]}
    renewed = {"sub": "u1", "iss": "app", "exp": 9, "iat": 5, "team_ids": [1, 2]}
    assert caller_of(first) == caller_of(renewed)
    assert caller_of(first) != caller_of({**first, "sub": "u2"})
    assert caller_of(first) != caller_of({**first, "iss": "other"})
    assert caller_of({"sub": 7, "org": 1}) == caller_of({"sub": 7, "org": 2})  # numeric subject


def test_without_a_subject_the_claims_are_the_caller_times_left_out() -> None:
    assert caller_of({"org": 1, "exp": 1, "jti": "a"}) == caller_of({"org": 1, "exp": 2})
    assert caller_of({"org": 1}) != caller_of({"org": 2})
    # Anonymous callers (no claims) share one identity, so one cap.
    assert caller_of({}) == caller_of({})
    # A subject that is not a string or number is not one: the claims count.
    assert caller_of({"sub": True, "org": 1}) != caller_of({"sub": True, "org": 2})


def test_the_cap_counts_slots_in_flight_and_release_is_idempotent() -> None:
    slots = CallerSlots(per_caller=2)
    a1, a2 = slots.take("a"), slots.take("a")
    b1 = slots.take("b")
    with pytest.raises(TooManyRequestsError, match="bootstrap_max_per_caller = 2") as refused:
        slots.take("a")
    assert refused.value.retry_after_s >= 1
    assert (slots.held("a"), slots.held("b"), slots.total) == (2, 1, 3)
    a1.release()
    a1.release()
    assert (slots.held("a"), slots.total) == (1, 2)
    slots.take("a")
    for slot in (a2, b1):
        slot.release()
    assert (slots.held("a"), slots.held("b"), slots.total) == (1, 0, 1)


def test_the_settings_read_from_a_bootstrap_table(tmp_path: Path) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text("[bootstrap]\nwait_s = 0.5\nmax_per_caller = 2\nwrite_timeout_s = 5\n"
                      "[gateway]\nsnapshot_busy_s = 3\n")
    settings = load_settings(config, environ={})
    assert settings.bootstrap_wait_s == 0.5
    assert settings.bootstrap_max_per_caller == 2
    assert settings.bootstrap_write_timeout_s == 5.0
    assert settings.gateway_snapshot_busy_s == 3.0
