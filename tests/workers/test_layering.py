"""Layering: middleware never imports the workers; job paths resolve."""

from __future__ import annotations

import re
from pathlib import Path

from rq.utils import import_attribute

from pgsift.middleware.dumps.enqueue import BUILD_JOB
from pgsift.workers.schedule import DROP_JOB, TRIM_JOB, WARM_JOB

MIDDLEWARE = Path(__file__).resolve().parents[2] / "middleware"


def test_middleware_never_imports_workers() -> None:
    for path in MIDDLEWARE.rglob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+pgsift\.workers", path.read_text(), re.M)
        assert not imports, f"{path} imports pgsift.workers"


def test_job_paths_name_module_level_functions() -> None:
    for name in (BUILD_JOB, WARM_JOB, TRIM_JOB, DROP_JOB):
        assert callable(import_attribute(name)), name
