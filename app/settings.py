"""Settings, read from the environment once, by the caller, never at import time."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from ledger.projects import valid_project_id


class SettingsError(ValueError):
    pass


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tokenledger"


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    issuer: str = "http://127.0.0.1:8000"  # from_env: default_issuer(host, port)
    # The root project's id: served at the server's own URLs; see docs/tenancy.md.
    project_id: str = "default"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None
    data_dir: Path = Path(".tokenledger")
    scopes_supported: tuple[str, ...] = ("mcp",)
    default_scope: tuple[str, ...] = ("mcp",)
    default_audience: str | None = None  # None: the issuer
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    code_ttl: int = 60
    session_ttl: int = 8 * 3600
    login_failures_per_account: int = 10
    login_failures_per_address: int = 100
    login_window: int = 15 * 60
    key_encryption_secret: str | None = None
    # Access token signatures: RS256 (the default), ES256 or EdDSA, for new keys.
    signing_alg: str = "RS256"
    # `tokenledger keys rotate`: the next key is published this long before it signs.
    key_publish_delay: int = 3600
    # How often a replica re-reads the key schedule (to pick up a rotation).
    key_refresh_interval: int = 30
    # RFC 7591 dynamic registration: "open" (public clients without a token; confidential
    # ones with the initial access token), "token" (every registration needs it), "off".
    registration: str = "open"
    registration_access_token: str | None = None
    registrations_per_address: int = 20
    registration_window: int = 3600
    # Seals (ledger/seals.py): every this many seconds when there are new events, and on
    # shutdown; 0 turns the background sealer off (`tokenledger audit seal` still works).
    # Token requests (POST /oauth/token) per registered client and per client address
    # in a fixed window of this many seconds; then 429 with Retry-After. 0: no limit.
    token_requests_per_client: int = 600
    token_requests_per_address: int = 3000
    token_rate_window: int = 60
    seal_interval: int = 5
    seal_key_file: Path | None = None  # an Ed25519 private key (PEM, PKCS #8)
    database_wait: int = 60  # seconds serve and migrate wait for the database at start
    workers: int | None = None  # None: the number of cores (serve --workers)
    # RFC 8707 resources: tokens are only for registered resource servers
    # (`tokenledger resources add`) unless this development setting allows any URI.
    allow_any_resource: bool = False
    # Client ID Metadata Documents (app/adapters/metadata_documents.py). Private
    # addresses and plain http are for tests only: both let a client id make this server
    # fetch from its own network.
    cimd_enabled: bool = True
    cimd_allow_private: bool = False
    cimd_allow_http: bool = False  # http://127.0.0.1 only, and only with allow_private
    cimd_timeout: float = 3.0
    cimd_max_bytes: int = 64 * 1024
    pool_min_size: int = 2
    pool_max_size: int = 20
    # Toward the database (issue 10): a request waits at most db_pool_timeout seconds for
    # a connection, then gets 503; past db_pool_max_waiting queued requests it gets 503 at
    # once. Server-side limits bound a lock or a slow statement; TCP keepalives find a
    # peer that vanished; connect_timeout bounds a connection attempt.
    db_pool_timeout: float = 1.0
    db_pool_max_waiting: int = 200
    db_reconnect_timeout: float = 300.0
    db_connect_timeout: int = 2
    db_statement_timeout_ms: int = 5000
    # Seconds beyond statement_timeout to wait for a server that answers nothing at all
    # (frozen), before the connection is dropped and the request answered 503.
    db_reply_margin: float = 1.0
    db_lock_timeout_ms: int = 2000
    db_idle_in_transaction_timeout_ms: int = 10000
    db_keepalives_idle: int = 10
    db_keepalives_interval: int = 5
    db_keepalives_count: int = 3
    log_json: bool | None = None  # None: JSON unless stderr is a terminal
    # Against slow and numerous clients: idle keep-alive connections are closed after
    # this many seconds, and a request not read whole within the read timeout; past this
    # many open connections and tasks uvicorn answers 503; a request head larger than
    # this is refused (uvicorn's h11 limit, and app/server.py's for httptools).
    http_keep_alive_timeout: int = 5
    http_read_timeout: int = 10  # seconds to read a whole request (app/server.py)
    http_limit_concurrency: int = 1000
    http_max_header_bytes: int = 16 * 1024
    # At SIGTERM, open requests get this many seconds to finish before they are cancelled
    # (an /audit/stream tail would otherwise hold the stop up for its whole minute); kept
    # under a container engine's grace period (compose.yaml: 20 s) so the final seal and
    # the embedded PostgreSQL's stop still run.
    shutdown_timeout: int = 10
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (app/http/proxies.py):
    # addresses or CIDR blocks; none by default, so the TCP peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Prometheus metrics (app/metrics.py): "off", or "on" at /metrics on the main port,
    # behind `Authorization: Bearer <metrics_token>` when that is set.
    metrics: str = "off"
    metrics_token: str | None = None

    @property
    def audience(self) -> str:
        return self.default_audience or self.issuer

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")


_INT_SETTINGS = {
    "TOKENLEDGER_PORT": "port",
    "TOKENLEDGER_ACCESS_TOKEN_TTL": "access_token_ttl",
    "TOKENLEDGER_REFRESH_TOKEN_TTL": "refresh_token_ttl",
    "TOKENLEDGER_CODE_TTL": "code_ttl",
    "TOKENLEDGER_SESSION_TTL": "session_ttl",
    "TOKENLEDGER_LOGIN_FAILURES_PER_ACCOUNT": "login_failures_per_account",
    "TOKENLEDGER_LOGIN_FAILURES_PER_ADDRESS": "login_failures_per_address",
    "TOKENLEDGER_LOGIN_WINDOW": "login_window",
    "TOKENLEDGER_REGISTRATIONS_PER_ADDRESS": "registrations_per_address",
    "TOKENLEDGER_REGISTRATION_WINDOW": "registration_window",
    "TOKENLEDGER_WORKERS": "workers",
    "TOKENLEDGER_DATABASE_WAIT": "database_wait",
    "TOKENLEDGER_POOL_MIN_SIZE": "pool_min_size",
    "TOKENLEDGER_POOL_MAX_SIZE": "pool_max_size",
    "TOKENLEDGER_DB_POOL_MAX_WAITING": "db_pool_max_waiting",
    "TOKENLEDGER_DB_CONNECT_TIMEOUT": "db_connect_timeout",
    "TOKENLEDGER_DB_STATEMENT_TIMEOUT_MS": "db_statement_timeout_ms",
    "TOKENLEDGER_DB_LOCK_TIMEOUT_MS": "db_lock_timeout_ms",
    "TOKENLEDGER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "db_idle_in_transaction_timeout_ms",
    "TOKENLEDGER_DB_KEEPALIVES_IDLE": "db_keepalives_idle",
    "TOKENLEDGER_DB_KEEPALIVES_INTERVAL": "db_keepalives_interval",
    "TOKENLEDGER_DB_KEEPALIVES_COUNT": "db_keepalives_count",
    "TOKENLEDGER_HTTP_KEEP_ALIVE_TIMEOUT": "http_keep_alive_timeout",
    "TOKENLEDGER_HTTP_READ_TIMEOUT": "http_read_timeout",
    "TOKENLEDGER_HTTP_LIMIT_CONCURRENCY": "http_limit_concurrency",
    "TOKENLEDGER_HTTP_MAX_HEADER_BYTES": "http_max_header_bytes",
    "TOKENLEDGER_SHUTDOWN_TIMEOUT": "shutdown_timeout",
    "TOKENLEDGER_SEAL_INTERVAL": "seal_interval",
    "TOKENLEDGER_KEY_PUBLISH_DELAY": "key_publish_delay",
    "TOKENLEDGER_KEY_REFRESH_INTERVAL": "key_refresh_interval",
    "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT": "token_requests_per_client",
    "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS": "token_requests_per_address",
    "TOKENLEDGER_TOKEN_RATE_WINDOW": "token_rate_window",
}
# Integer settings for which 0 is allowed ("off", or "at once").
_MAY_BE_ZERO = {
    "TOKENLEDGER_DATABASE_WAIT",
    "TOKENLEDGER_SEAL_INTERVAL",
    "TOKENLEDGER_KEY_PUBLISH_DELAY",
    "TOKENLEDGER_KEY_REFRESH_INTERVAL",
    "TOKENLEDGER_TOKEN_REQUESTS_PER_CLIENT",
    "TOKENLEDGER_TOKEN_REQUESTS_PER_ADDRESS",
}
_BOOL_SETTINGS = {
    "TOKENLEDGER_ALLOW_ANY_RESOURCE": "allow_any_resource",
    "TOKENLEDGER_CIMD": "cimd_enabled",
    "TOKENLEDGER_CIMD_ALLOW_PRIVATE": "cimd_allow_private",
    "TOKENLEDGER_CIMD_ALLOW_HTTP": "cimd_allow_http",
}
_FLOAT_SETTINGS = {
    "TOKENLEDGER_DB_POOL_TIMEOUT": "db_pool_timeout",
    "TOKENLEDGER_DB_RECONNECT_TIMEOUT": "db_reconnect_timeout",
    "TOKENLEDGER_DB_REPLY_MARGIN": "db_reply_margin",
    "TOKENLEDGER_CIMD_TIMEOUT": "cimd_timeout",
}

_PLAIN_SETTINGS = {
    "TOKENLEDGER_ISSUER": "issuer",
    "TOKENLEDGER_HOST": "host",
    "DATABASE_URL": "database_url",
    "TOKENLEDGER_DEFAULT_AUDIENCE": "default_audience",
    "TOKENLEDGER_KEY_ENCRYPTION_SECRET": "key_encryption_secret",
    "TOKENLEDGER_REGISTRATION": "registration",
    "TOKENLEDGER_REGISTRATION_ACCESS_TOKEN": "registration_access_token",
    "TOKENLEDGER_SIGNING_ALG": "signing_alg",
    "TOKENLEDGER_PROJECT_ID": "project_id",
    "TOKENLEDGER_METRICS": "metrics",
    "TOKENLEDGER_METRICS_TOKEN": "metrics_token",
}
# Every variable from_env reads, with the field it sets (the README lists each one).
ENVIRONMENT: dict[str, str] = {
    **_PLAIN_SETTINGS,
    **_INT_SETTINGS,
    **_FLOAT_SETTINGS,
    **_BOOL_SETTINGS,
    "TOKENLEDGER_DATA_DIR": "data_dir",
    "TOKENLEDGER_SEAL_KEY_FILE": "seal_key_file",
    "TOKENLEDGER_SCOPES": "scopes_supported",
    "TOKENLEDGER_DEFAULT_SCOPE": "default_scope",
    "TOKENLEDGER_LOG_FORMAT": "log_json",
    "TOKENLEDGER_TRUSTED_PROXIES": "trusted_proxies",
}
_UNSET = {
    "workers": "(unset: the number of cores)",
    "log_json": "(unset: json unless stderr is a terminal)",
    "default_audience": "(unset: the issuer)",
}
SECRETS = {"key_encryption_secret", "registration_access_token", "metrics_token"}


def effective(settings: Settings) -> list[tuple[str, str]]:
    """(variable, value) for every setting, as ``tokenledger config check`` shows them:
    secrets masked, and a database URL's password too."""
    shown = []
    for name, field in ENVIRONMENT.items():
        value = getattr(settings, field)
        if field in SECRETS:
            text = "(unset)" if value is None else "******** (set)"
        elif field == "database_url":
            text = "(unset: embedded PostgreSQL)" if value is None else _mask_password(value)
        elif value is None:
            text = _UNSET.get(field, "(unset)")
        elif value == ():
            text = "(none)"
        elif isinstance(value, tuple):
            text = (" " if field.endswith("scope") or field == "scopes_supported" else ",").join(
                value
            )
        elif isinstance(value, bool) and field != "log_json":
            text = "true" if value else "false"
        elif field == "log_json":
            text = "json" if value else "console"
        else:
            text = str(value)
        shown.append((name, text))
    return shown


def _mask_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def default_issuer(host: str, port: int) -> str:
    """Without TOKENLEDGER_ISSUER, the issuer is where the server listens: the metadata's
    endpoints then point at the port actually served. A wildcard host (``0.0.0.0``, ``::``)
    names no address a client could use: loopback is advertised, and ``serve`` warns."""
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 (compared, not bound)
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``env`` (default: the process environment); see the README."""
    env = os.environ if env is None else env
    values: dict[str, object] = {"data_dir": _default_data_dir(env)}
    for key, field in _INT_SETTINGS.items():
        if env.get(key):
            try:
                values[field] = int(env[key])
            except ValueError:
                raise SettingsError(f"{key} must be an integer, not {env[key]!r}") from None
            if values[field] < (0 if key in _MAY_BE_ZERO else 1):  # type: ignore[operator]
                raise SettingsError(f"{key} must be positive")
    for key, field in _FLOAT_SETTINGS.items():
        if env.get(key):
            try:
                values[field] = float(env[key])
            except ValueError:
                raise SettingsError(f"{key} must be a number, not {env[key]!r}") from None
            if not values[field] > 0:  # type: ignore[operator]
                raise SettingsError(f"{key} must be positive")
    for key, field in _PLAIN_SETTINGS.items():
        if env.get(key):
            values[field] = env[key]
    if env.get("TOKENLEDGER_DATA_DIR"):
        values["data_dir"] = Path(env["TOKENLEDGER_DATA_DIR"])
    if env.get("TOKENLEDGER_SEAL_KEY_FILE"):
        values["seal_key_file"] = Path(env["TOKENLEDGER_SEAL_KEY_FILE"])
    if env.get("TOKENLEDGER_SCOPES"):
        values["scopes_supported"] = tuple(env["TOKENLEDGER_SCOPES"].split())
    if env.get("TOKENLEDGER_DEFAULT_SCOPE") is not None:
        values["default_scope"] = tuple(env["TOKENLEDGER_DEFAULT_SCOPE"].split())
    if env.get("TOKENLEDGER_TRUSTED_PROXIES"):
        values["trusted_proxies"] = tuple(
            p.strip() for p in env["TOKENLEDGER_TRUSTED_PROXIES"].split(",") if p.strip()
        )
    for key, field in _BOOL_SETTINGS.items():
        if env.get(key):
            value = env[key].strip().lower()
            if value not in ("1", "true", "yes", "0", "false", "no"):
                raise SettingsError(f"{key} must be true or false, not {env[key]!r}")
            values[field] = value in ("1", "true", "yes")
    if env.get("TOKENLEDGER_LOG_FORMAT"):
        values["log_json"] = env["TOKENLEDGER_LOG_FORMAT"].lower() == "json"
    values.update(overrides)
    if "issuer" not in values:
        host, port = values.get("host", DEFAULT_HOST), values.get("port", DEFAULT_PORT)
        values["issuer"] = default_issuer(str(host), int(port))  # type: ignore[call-overload]
    settings = Settings(**values)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    issuer = settings.issuer
    # RFC 8414 §2: https, no query or fragment; http is allowed for local development.
    if not issuer.startswith(("https://", "http://")) or "?" in issuer or "#" in issuer:
        raise SettingsError("TOKENLEDGER_ISSUER must be an http(s) URL without query or fragment")
    if issuer.endswith("/"):
        raise SettingsError("TOKENLEDGER_ISSUER must not end with '/'")
    if settings.signing_alg not in ("RS256", "ES256", "EdDSA"):
        raise SettingsError("TOKENLEDGER_SIGNING_ALG must be RS256, ES256 or EdDSA")
    if settings.registration not in ("open", "token", "off"):
        raise SettingsError("TOKENLEDGER_REGISTRATION must be open, token or off")
    token = settings.registration_access_token
    if token is not None and len(token) < 32:
        raise SettingsError("TOKENLEDGER_REGISTRATION_ACCESS_TOKEN must be at least 32 characters")
    if settings.registration == "token" and token is None:
        raise SettingsError(
            "TOKENLEDGER_REGISTRATION=token needs TOKENLEDGER_REGISTRATION_ACCESS_TOKEN"
        )
    if settings.metrics not in ("off", "on"):
        raise SettingsError("TOKENLEDGER_METRICS must be off or on")
    if settings.metrics_token is not None and len(settings.metrics_token) < 32:
        raise SettingsError("TOKENLEDGER_METRICS_TOKEN must be at least 32 characters")
    for proxy in settings.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                f"TOKENLEDGER_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR block"
            ) from None
    if settings.cimd_allow_http and not settings.cimd_allow_private:
        raise SettingsError(
            "TOKENLEDGER_CIMD_ALLOW_HTTP needs TOKENLEDGER_CIMD_ALLOW_PRIVATE (tests only)"
        )
    if not valid_project_id(settings.project_id):
        raise SettingsError("TOKENLEDGER_PROJECT_ID must be 1 to 48 letters, digits, '-' or '_'")
    unknown = [s for s in settings.default_scope if s not in settings.scopes_supported]
    if unknown:
        raise SettingsError(f"default scope {unknown} is not in TOKENLEDGER_SCOPES")
