"""The install layout: three folders, three subpackages of `pgsift`."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"middleware": "pgsift.middleware", "subscriptions": "pgsift.subscriptions",
           "workers": "pgsift.workers"}


def test_every_code_folder_is_a_listed_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            name = ".".join((package, *relative))
            assert name in listed, f"{name} missing from [tool.setuptools] packages"


def test_subpackages_import_from_their_folders() -> None:
    for folder, package in FOLDERS.items():
        module = importlib.import_module(package)
        assert Path(module.__file__ or "").parent == ROOT / folder


def test_pure_core_imports_nothing_of_the_io_layers() -> None:
    for path in (ROOT / "subscriptions").rglob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+(pgsift\.\w+)", path.read_text(), re.M)
        assert set(imports) <= {"pgsift.subscriptions"}, path
