"""Settings: file, environment and flags, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgsift.middleware import settings as settings_module
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.settings import load_settings


def test_layers_win_in_order(tmp_path: Path) -> None:
    config = tmp_path / "pgsift.toml"
    config.write_text('redis_url = "redis://file"\nport = 1\n[capture]\nslot = "fromfile"\n')
    settings = load_settings(config, environ={"PGSIFT_PORT": "2"}, redis_url="redis://flag")
    assert settings.redis_url == "redis://flag"
    assert settings.port == 2
    assert settings.capture_slot == "fromfile"


def test_bad_values_and_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting port"):
        load_settings(environ={"PGSIFT_PORT": "eighty"})
    config = tmp_path / "pgsift.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*prot"):
        load_settings(config, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_lists_from_environment() -> None:
    settings = load_settings(environ={"PGSIFT_CAPTURE_TABLES": "a, public.b"})
    assert settings.capture_tables == ("a", "public.b")


def test_an_unknown_environment_variable_is_warned_about_with_the_closest_name(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())  # warned once per process
    load_settings(environ={"PGSIFT_CAPTURE_SLOTT": "x", "PGSIFT_TEST_REDIS_URL": "redis://t",
                           "PGSIFT_FEED_MAXLEN": "5", "PGSIFT_QWXZ": "1"})
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert warnings == [
        "PGSIFT_CAPTURE_SLOTT is not a pgsift setting and is ignored; "
        "did you mean PGSIFT_CAPTURE_SLOT?",
        "PGSIFT_FEED_MAXLEN is not a pgsift setting and is ignored; "
        "did you mean PGSIFT_FEED_MAX_LEN?",
        "PGSIFT_QWXZ is not a pgsift setting and is ignored; the README lists the settings",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"database_url": "postgres:/bogus"}, r"setting database_url: 'postgres:/bogus' is not a "
                                              r"Postgres URL \(missing \"=\""),
        ({"database_url": "postgresql://u:secret@host"}, r"'postgresql://u:\*\*\*@host' names "
                                                         "no database"),
        ({"redis_url": "http://:secret@host"}, r"setting redis_url: 'http://:\*\*\*@host' is "
                                               "not a Redis URL"),
        ({"redis_url": "redis+cluster://:secret@host/2"}, r"'redis\+cluster://:\*\*\*@host/2' "
                                                          "names database 2, and a Redis Cluster"),
        ({"jobs_redis_url": "redis+cluster://host"}, "RQ .* needs a plain Redis"),
    ],
)
def test_malformed_urls_are_refused_without_their_password(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={}, **overrides)


def test_a_redis_cluster_url_and_a_jobs_redis(tmp_path: Path) -> None:
    settings = load_settings(environ={"PGSIFT_JOBS_REDIS_URL": "redis://jobs/0"},
                             redis_url="redis+cluster://node-1:7000")
    assert settings.redis_url == "redis+cluster://node-1:7000"
    assert settings.jobs_redis_url == "redis://jobs/0"
    config = tmp_path / "pgsift.toml"
    config.write_text('redis_url = "rediss+cluster://node-1:7000"\n'
                      '[jobs]\nredis_url = "redis://jobs/1"\n')
    settings = load_settings(config, environ={})
    assert (settings.redis_url, settings.jobs_redis_url) == (
        "rediss+cluster://node-1:7000", "redis://jobs/1")
