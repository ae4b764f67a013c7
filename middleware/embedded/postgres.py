"""A throwaway PostgreSQL cluster with logical replication enabled.

Uses the system binaries (`/usr/lib/postgresql/<newest>/bin`, or `pg_config
--bindir`), else the `pgserver` package's. initdb refuses to run as root, so as
root the cluster runs as the unprivileged user `nobody`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pgsift.middleware.embedded.ports import accepts_connections, free_port, wait_until
from pgsift.middleware.embedded.server import EmbeddedServer
from pgsift.middleware.errors import EmbeddedServerError

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
# C.UTF-8: byte-order (code point) collation, Unicode-aware case folding. The
# predicate engine documents and tests exactly these text semantics.
LOCALE = "C.UTF-8"
SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "40",
    "max_wal_senders": "40",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    "timezone": "'UTC'",
    # A throwaway cluster: trade crash safety of the OS for speed. Commits still
    # write their WAL at once (synchronous_commit stays on, cheap without fsync):
    # logical decoding only sees written WAL, so capture gets commits promptly.
    "fsync": "off",
    "full_page_writes": "off",
}


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres, newest system version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if Path(directory, "initdb").exists():
            return Path(directory)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EmbeddedServerError(
            "no PostgreSQL binaries found: install PostgreSQL (apt-get install postgresql) "
            "or the `pgserver` package, or set PGSIFT_DATABASE_URL"
        ) from exc
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres(EmbeddedServer):
    """A cluster in a temporary directory (or `base_dir`), as the superuser `postgres`."""

    def __init__(self, *, port: int | None = None, base_dir: Path | None = None) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="pgsift-pg-"))
        self.data_dir = self.base_dir / "data"
        self._as_user = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _launch(self) -> None:
        if not self.data_dir.exists():
            self._initdb()
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.base_dir / "postgres.log"))
        wait_until(lambda: accepts_connections(self.port), what="embedded Postgres")

    def stop(self, *, remove: bool = True) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w")
        if remove and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port and data (tests use this)."""
        self._pg_ctl("restart", "-m", "fast", "-w", "-l", str(self.base_dir / "postgres.log"))
        wait_until(lambda: accepts_connections(self.port), what="embedded Postgres")

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.base_dir, user=self._as_user)
            self.base_dir.chmod(0o755)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            f"--locale={LOCALE}",
        )
        config = dict(SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.base_dir}'")
        with open(self.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            for name, value in config.items():
                conf.write(f"{name} = {value}\n")

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            argv, capture_output=True, text=True, user=self._as_user, check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
