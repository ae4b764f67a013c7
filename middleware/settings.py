"""pgsift's one settings object, built in one place.

Sources, later ones winning: defaults, `pgsift.toml` (or the file named by
`--config` / `PGSIFT_CONFIG`), `PGSIFT_*` environment variables, command-line
flags. Every field is a flat, documented setting; `[section]` tables in the
file are flattened as `section_key` (e.g. `[capture] slot = "x"` is `capture_slot`).
An unknown name in the file is an error; an unknown `PGSIFT_*` variable is
warned about (with the closest setting's name), since the environment holds
variables of other programs too. URLs are checked here, so that a malformed
one is a `ConfigError` naming the setting, whatever command reads it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis.connection

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.redis_clients import is_cluster, node_url

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "pgsift.toml"
ENV_PREFIX = "PGSIFT_"
# PGSIFT_* variables that are not settings: the config file, the example client's
# token, and the test suite's own (PGSIFT_TEST_DATABASE_URL, PGSIFT_SOAK_..., ...).
NOT_SETTINGS = ("CONFIG", "TOKEN")
TEST_PREFIXES = ("TEST_", "SOAK_", "ORACLE_", "RECORD_")
_warned: set[str] = set()


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of pgsift with its default; see the README's reference."""

    # Connections. None means "start an embedded server" (demo only).
    database_url: str | None = None
    redis_url: str | None = None  # redis+cluster://host:port for a Redis Cluster
    # The Redis of RQ's queues and jobs (dump builds, warming, trimming); None: redis_url.
    # RQ needs a plain Redis: with a Redis Cluster in redis_url, name one here.
    jobs_redis_url: str | None = None

    # Capture.
    capture_tables: tuple[str, ...] = ()  # empty and not capture_all: refuse to guess
    capture_all: bool = False
    capture_slot: str = "pgsift"
    capture_publication: str = "pgsift"
    capture_lock_ttl_s: float = 10.0
    capture_max_changes_per_entry: int = 1000
    capture_health_host: str = "127.0.0.1"
    capture_health_port: int | None = None  # serve /healthz and /metrics here; None: don't

    # Feed retention.
    feed_max_len: int = 1_000_000
    feed_max_age_s: float = 7 * 24 * 3600.0
    # A heartbeat of capture older than this: the feed may be missing recent transactions
    # (the batch loader bypasses its cache, /healthz of serve and capture say so).
    feed_stale_after_s: float = 5.0

    # Gateway.
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_max_subscriptions_per_connection: int = 100
    gateway_max_message_bytes: int = 256_000  # approximate JSON size of one SyncMessage
    gateway_send_queue: int = 1000  # transactions waiting per connection; past it: mustRefetch
    gateway_connection_init_timeout_s: float = 10.0
    gateway_snapshot_connections: int = 8  # Postgres connections for snapshots, per process
    gateway_use_dumps: bool = True  # start a `sync` from a fresh bootstrap dump when there is one
    gateway_snapshot_wait_s: float = 30.0  # wait for a free snapshot connection; then an error
    gateway_snapshot_statement_timeout_s: float = 60.0  # Postgres statement_timeout of snapshots
    gateway_snapshot_idle_timeout_s: float = 60.0  # idle_in_transaction_session_timeout of them
    gateway_snapshot_busy_s: float = 10.0  # every snapshot connection busy longer: /healthz 503
    gateway_max_tx_changes: int = 10_000  # changes held per subscription and transaction
    gateway_max_frame_bytes: int = 1_048_576  # largest websocket frame a client may send
    gateway_max_query_bytes: int = 16_384  # largest SQL `query` of a `sync`
    gateway_max_params: int = 100  # most `params` of a `sync`
    gateway_max_graphql_tokens: int = 2000  # most tokens in a GraphQL document
    gateway_max_feed_lag_s: float = 10.0  # tailer behind the feed head longer: /healthz 503
    gateway_max_body_bytes: int = 1_048_576  # largest HTTP request body (bigger: 413, unread)
    gateway_max_json_depth: int = 64  # deepest nesting of any JSON a client sends
    gateway_max_query_rows: int = 1000  # most rows of one typed `Query.<table>(where)` read
    gateway_graphiql: bool = True  # GraphiQL on GET /graphql (a browser's GET)

    # Auth: the `[auth]` table, or these flat ones (e.g. PGSIFT_AUTH_JWT_SECRET), which win.
    auth_jwt_secret: str | None = None
    auth_jwt_public_key: str | None = None
    auth_anonymous: bool = False

    # Batch loader (`[loader]` in the file): a batch closes window_ms after its first key or
    # at max_batch keys; callers wait at most timeout_s; past max_pending keys it refuses.
    # One request (a POST /v1/rows, or all `rows` fields of a GraphQL document) asks for at
    # most max_keys keys.
    loader_window_ms: float = 1.0
    loader_max_batch: int = 500
    loader_cache_rows: int = 10_000
    loader_timeout_s: float = 5.0
    loader_pool_size: int = 4
    loader_max_pending: int = 50_000
    loader_max_keys: int = 10_000

    # Relational shapes (`[relational]`, docs/relational.md): inner selects nest at most
    # max_subquery_depth deep; a gateway keeps at most max_set_bytes of inner sets (past
    # it, the subscription that would need more gets mustRefetch).
    relational_max_subquery_depth: int = 3
    relational_max_set_bytes: int = 256 * 1024 * 1024

    # `GET /v1/bootstrap` (`[bootstrap]`): a live one takes a snapshot connection of the
    # gateway's pool (gateway_snapshot_connections), waiting at most wait_s (then 503); a
    # caller (token subject) has at most max_per_caller in flight per process (then 429); a
    # client that takes no bytes for write_timeout_s is dropped (0: never).
    bootstrap_wait_s: float = 2.0
    bootstrap_max_per_caller: int = 4
    bootstrap_write_timeout_s: float = 30.0

    # Bootstrap dumps (`[dumps]`): built by workers, served by gateways.
    dumps_dir: str | None = None  # a directory shared by workers and gateways; None: in Redis
    dumps_max_age_s: float = 300.0  # a dump at most this old is served instead of a live query
    dumps_retention_s: float = 24 * 3600.0  # older dumps (and superseded ones) are dropped
    dumps_build_timeout_s: float = 3600.0
    dumps_warm_top: int = 10  # also keep dumps of this many most-bootstrapped shapes
    dumps_warm_every_s: float = 300.0  # default rebuild interval of a warm shape
    dumps_warm_changes: int = 10_000  # rebuild sooner once this many changes touched its table

    # Writes (`[mutations]`): the app's mutators, named in `[mutators]` (docs/writes.md).
    mutations_max_batch: int = 100  # mutations in one request
    mutations_max_args_bytes: int = 65_536  # JSON size of one mutation's args
    mutations_pool_size: int = 8  # Postgres connections (and threads) running mutators
    mutations_wait_s: float = 10.0  # wait for a free connection; then 503
    mutations_statement_timeout_s: float = 30.0  # Postgres statement_timeout of mutators
    mutations_owner_claim: str = "sub"  # the claim a client id belongs to

    # Sections with structure of their own, kept as parsed from the file.
    policies: Mapping[str, Any] = field(default_factory=dict)
    auth: Mapping[str, Any] = field(default_factory=dict)
    warm: tuple[Mapping[str, Any], ...] = ()
    mutators: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied; None values are ignored (unset flags)."""
        return _build({**_as_dict(self), **{k: v for k, v in changes.items() if v is not None}})


STRUCTURED = {"policies", "auth", "warm", "mutators"}


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path is not None or Path(DEFAULT_CONFIG_FILE).exists():
        values.update(_read_file(Path(path or DEFAULT_CONFIG_FILE), must_exist=path is not None))
    names = {f.name for f in dataclasses.fields(Settings)}
    for name in names - STRUCTURED:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    _warn_unknown(environ, names - STRUCTURED)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(values)


def _warn_unknown(environ: Mapping[str, str], names: set[str]) -> None:
    """Warn (once per process) about PGSIFT_* variables no setting reads: a typo there
    would otherwise be silently ignored."""
    for variable in sorted(environ):
        rest = variable.removeprefix(ENV_PREFIX)
        if (rest == variable or rest.lower() in names or rest in NOT_SETTINGS
                or rest.startswith(TEST_PREFIXES) or variable in _warned):
            continue
        _warned.add(variable)
        close = difflib.get_close_matches(rest.lower(), names, n=1)
        hint = (f"did you mean {ENV_PREFIX}{close[0].upper()}?" if close
                else "the README lists the settings")
        log.warning("%s is not a pgsift setting and is ignored; %s", variable, hint)


def _read_file(path: Path, *, must_exist: bool) -> dict[str, Any]:
    if not path.exists():
        if must_exist:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key in STRUCTURED:
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key}_{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def _build(values: Mapping[str, Any]) -> Settings:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    converted = {name: _convert(name, fields[name].type, value) for name, value in values.items()}
    settings = Settings(**converted)
    if settings.database_url is not None:
        _check_database_url(settings.database_url)
    if settings.redis_url is not None:
        _check_redis_url("redis_url", settings.redis_url)
    if settings.jobs_redis_url is not None:
        _check_redis_url("jobs_redis_url", settings.jobs_redis_url)
        if is_cluster(settings.jobs_redis_url):
            raise ConfigError(
                f"setting jobs_redis_url: {redacted(settings.jobs_redis_url)!r} is a Redis "
                "Cluster, and RQ (pgsift's job queue) needs a plain Redis; write it as "
                "redis://[:password@]host:6379/0"
            )
    return settings


def _check_database_url(url: str) -> None:
    example = "postgresql://user:password@host:5432/dbname"
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"setting database_url: {redacted(url)!r} is not a Postgres URL "
            f"({str(exc).strip()}); "
            f"write it as {example}"
        ) from None
    if not params.get("dbname"):
        raise ConfigError(
            f"setting database_url: {redacted(url)!r} names no database (pgsift keys its feed "
            f"by it); write it as {example}"
        )


def _check_redis_url(name: str, url: str) -> None:
    node = node_url(url)
    try:
        parsed = redis.connection.parse_url(node or url)
    except ValueError as exc:
        raise ConfigError(
            f"setting {name}: {redacted(url)!r} is not a Redis URL ({str(exc).strip()}); "
            "write it as "
            "redis://[:password@]host:6379/0 (redis+cluster://host:6379 for a Redis Cluster)"
        ) from None
    if node is not None and parsed.get("db", 0) != 0:
        raise ConfigError(
            f"setting {name}: {redacted(url)!r} names database {parsed['db']}, and a Redis "
            "Cluster has only database 0; write it as redis+cluster://host:6379"
        )


def redacted(url: str) -> str:
    """`url` with any password replaced by `***`, fit for a message or a log."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)


def _convert(name: str, annotation: Any, value: Any) -> Any:
    """Coerce a file or environment value to the field's type, or say why not."""
    kind = str(annotation)
    try:
        if name in STRUCTURED:
            if name == "warm":
                return tuple(value)
            if not isinstance(value, Mapping):
                raise TypeError("expected a table")
            return check_auth_table(value) if name == "auth" else value
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(v) for v in value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes"}
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "int | None":
            return None if value is None or value == "" else int(value)
        if kind == "float":
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: bad value {value!r} (expected {kind})") from exc


AUTH_ALGORITHMS = ("HS256", "RS256", "ES256")
# The keys of the `[auth]` table and the kind of value each takes.
AUTH_KEYS = {
    "jwt_secret": "str", "jwt_public_key": "str", "jwt_public_key_file": "str",
    "algorithms": "algorithms", "audience": "str", "issuer": "str", "leeway_s": "number",
    "anonymous": "bool", "anonymous_claims": "table", "require_exp": "bool",
}


def check_auth_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The `[auth]` table with each value checked and typed; ConfigError names a bad key.

    Booleans accept true/false, or the strings the environment accepts ("false",
    "0", "no", ...); `algorithms` is a list drawn from AUTH_ALGORITHMS.
    """
    unknown = sorted(set(table) - set(AUTH_KEYS))
    if unknown:
        raise ConfigError(f"auth: unknown setting(s) {', '.join(unknown)}")
    return {key: _auth_value(key, AUTH_KEYS[key], value) for key, value in table.items()}


def _auth_value(key: str, kind: str, value: Any) -> Any:
    name = f"auth.{key}"
    if kind == "bool" and isinstance(value, (bool, str)):
        return _convert(name, "bool", value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "table" and isinstance(value, Mapping):
        return value
    if kind == "algorithms" and isinstance(value, (list, tuple)) and value:
        wrong = [v for v in value if v not in AUTH_ALGORITHMS]
        if not wrong:
            return tuple(value)
    expected = {
        "algorithms": f"a non-empty list of {', '.join(AUTH_ALGORITHMS)}",
        "number": "a number", "str": "a string", "table": "a table", "bool": "true or false",
    }[kind]
    raise ConfigError(f"setting {name}: bad value {value!r} (expected {expected})")


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
