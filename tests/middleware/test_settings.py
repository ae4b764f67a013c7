"""Settings: file, environment and flags, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

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
