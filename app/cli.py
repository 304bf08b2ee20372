"""The ``tokenledger`` command: serve, migrate, register users and clients, rebuild."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import psycopg

from app.adapters.database import (
    SchemaBehind,
    database_url,
    require_current_schema,
    run_migrations,
    wait_for_database,
)
from app.adapters.user_keys import personal_keys
from app.http.context import utc_now
from app.logging import configure
from app.settings import Settings, SettingsError, from_env
from app.usecases import erasure, handler, registration, revocation
from projections import tenancy

if TYPE_CHECKING:
    import uvicorn

T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    try:
        return from_env(None, **overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _with_database(
    settings: Settings, work: Callable[[str], Awaitable[T]], *, read_only: bool = False
) -> T:
    """Run ``work`` against the database (embedded unless DATABASE_URL is set): migrated
    first, or for a command that only reads, refused if its schema is behind."""
    with database_url(settings) as url:

        async def run() -> T:
            if read_only:
                await require_current_schema(url)
            else:
                await run_migrations(url, root=settings.project_id)
            return await work(url)

        try:
            return asyncio.run(run())
        except SchemaBehind as exc:
            raise click.ClickException(str(exc)) from None


def _project() -> str | None:
    """The project ``--project`` names (None: the root project)."""
    ctx = click.get_current_context(silent=True)
    project: str | None = ctx.find_root().params.get("project") if ctx else None
    if project is not None and project == _settings().project_id:
        return None  # the root project, named
    return project


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    """A connection in the project ``--project`` names: the clients, users, keys and
    sessions a command reads and writes are that project's."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await tenancy.use(conn, _project(), disabled_too=True)
    except tenancy.UnknownProject:
        await conn.close()
        raise click.ClickException(f"no such project: {_project()}") from None
    return conn


# The commands --project applies to: those on a project's clients, users, keys,
# sessions, resources and families, one family's audit timeline, and the log's events
# and export (then that project's streams only). The others are the server's own
# (serve, migrations, seals, projects, auditors, roles) and refuse the option: ignoring
# it would hand someone who asked for one project the whole server's.
_PROJECT_COMMANDS = frozenset({"users", "families", "clients", "keys", "resources"})
_PROJECT_AUDIT_COMMANDS = frozenset({"family", "events", "export"})


def _refuse_project(command: str | None) -> None:
    raise click.UsageError(
        f"--project does not apply to `{command}`: it is the server's, not a project's"
    )


@click.group()
@click.option(
    "--project",
    default=None,
    metavar="ID",
    help="Work on this project's clients, users, keys and sessions (docs/tenancy.md)"
    " [default: the root project, TOKENLEDGER_PROJECT_ID].",
)
def main(project: str | None) -> None:
    """tokenledger: an OAuth 2.1 authorization server on an append-only event ledger."""
    # Operator commands log only what needs attention; `serve` logs every request.
    configure(level=logging.WARNING)
    command = click.get_current_context().invoked_subcommand
    if project is not None and command not in _PROJECT_COMMANDS | {"audit"}:
        _refuse_project(command)


@main.command()
@click.option("--host", default=None, help="Address to listen on [TOKENLEDGER_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [TOKENLEDGER_PORT].")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not migrate (run as the runtime role, which cannot): refuse a schema behind.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [TOKENLEDGER_WORKERS; default: the number of cores].",
)
def serve(host: str | None, port: int | None, no_migrate: bool, workers: int | None) -> None:
    """Migrate the database and serve HTTP (embedded PostgreSQL without DATABASE_URL).

    SIGTERM and Ctrl-C alike stop accepting, let in-flight requests finish (for at most
    TOKENLEDGER_SHUTDOWN_TIMEOUT seconds), then stop the workers and the embedded
    PostgreSQL. Workers whose parent is gone (SIGKILL) stop the same way by themselves."""
    import uvicorn

    from app.http.app import create_app

    # uvicorn drains, then re-raises SIGTERM; with the default action that killed the
    # process before the embedded PostgreSQL was stopped (Ctrl-C's KeyboardInterrupt
    # unwound through the cleanup). SystemExit unwinds like it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    given = {"host": host, "port": port}
    settings = _settings(**{k: v for k, v in given.items() if v is not None})
    configure(settings.log_json)
    _announce(settings)
    with database_url(settings) as url:
        try:
            # --no-migrate: also wait for the migration (a one-shot service) to finish.
            asyncio.run(wait_for_database(url, settings.database_wait, schema=no_migrate))
            if not no_migrate:
                asyncio.run(run_migrations(url, root=settings.project_id))
        except SchemaBehind as exc:
            raise click.ClickException(str(exc)) from None
        count = workers or settings.workers or os.cpu_count() or 1
        if count == 1:
            app = create_app(settings, url)
            uvicorn.Server(uvicorn_config(app, settings)).run()
            return
        _serve_workers(settings, url, count)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve_workers(
    settings: Settings, url: str, count: int, factory: str = "app.server:worker_app"
) -> None:
    """uvicorn's supervisor: one socket, ``count`` worker processes, each with its own
    pool, running the app ``factory`` makes; on SIGTERM or SIGINT each worker drains,
    then the supervisor returns."""
    from uvicorn.supervisors import Multiprocess

    from app.server import WorkerConfig

    # What the workers need from this process: the database (the embedded server runs
    # here only) and the issuer settled here (from --host/--port).
    os.environ.update(
        DATABASE_URL=url,
        TOKENLEDGER_ISSUER=settings.issuer,
        TOKENLEDGER_HOST=settings.host,
        TOKENLEDGER_PORT=str(settings.port),
    )
    # prometheus_client's multiprocess mode: each worker writes its values to files in
    # this directory and /metrics sums them (set before any worker starts).
    metrics_dir = None
    if settings.metrics != "off" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.TemporaryDirectory(prefix="tokenledger-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    config = WorkerConfig(
        factory,
        factory=True,
        workers=count,
        host=settings.host,
        port=settings.port,
        read_timeout=settings.http_read_timeout,
        max_head_bytes=settings.http_max_header_bytes,
        parent_pid=os.getpid(),
        **_uvicorn_options(settings),
    )

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            # Stop listening here first: the parent's copy of the socket would otherwise
            # keep taking connections that no worker accepts any more, and drop them
            # unanswered at exit (seen as lost requests while a replica restarted).
            for listening in self.sockets:
                listening.close()
            super().terminate_all()

    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
        if metrics_dir is not None:
            metrics_dir.cleanup()


@main.group()
def config() -> None:
    """The settings, read from the environment."""


@config.command("check")
def config_check() -> None:
    """Print the effective settings (secrets masked); exit non-zero on an invalid one."""
    from app.settings import effective

    try:
        settings = from_env()
    except SettingsError as exc:
        raise click.ClickException(f"invalid setting: {exc}") from None
    for name, value in effective(settings):
        click.echo(f"{name}={value}")
    if settings.seal_key_file is not None and not settings.seal_key_file.is_file():
        raise click.ClickException(f"TOKENLEDGER_SEAL_KEY_FILE: no file {settings.seal_key_file}")
    click.echo("settings are valid", err=True)


def _announce(settings: Settings) -> None:
    """Say at start which issuer (and so which endpoint base) the metadata advertises."""
    import structlog

    log = structlog.get_logger("app.cli")
    source = "TOKENLEDGER_ISSUER" if os.environ.get("TOKENLEDGER_ISSUER") else "host and port"
    log.info(
        "serving",
        issuer=settings.issuer,
        issuer_from=source,
        host=settings.host,
        port=settings.port,
    )
    if source != "TOKENLEDGER_ISSUER" and settings.host in ("0.0.0.0", "::"):  # noqa: S104
        log.warning("listening on every address: set TOKENLEDGER_ISSUER to the public URL")


def uvicorn_config(
    app: Any, settings: Settings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """How ``serve`` runs uvicorn: bounded in connections, idle time, header size and the
    time to read a request, so that slow or numerous clients cannot hold the server."""
    import uvicorn

    from app.server import read_timeout_protocol

    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        http=read_timeout_protocol(settings.http_read_timeout, settings.http_max_header_bytes),
        **_uvicorn_options(settings),
    )


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What one process and ``--workers N`` alike pass to uvicorn (one list, so that a
    limit cannot be set for one and forgotten for the other)."""
    return {
        "access_log": False,
        "log_level": "warning",
        "log_config": None,  # uvicorn's records go to the root logger: JSON like ours
        # X-Forwarded-* are handled by app/http/proxies.py, from trusted proxies only.
        "proxy_headers": False,
        "timeout_keep_alive": settings.http_keep_alive_timeout,
        "limit_concurrency": settings.http_limit_concurrency,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        # Then open requests (a live tail runs a minute) are cancelled, and the
        # lifespan's shutdown (the final seal, the pool) still runs.
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }


@main.command()
def migrate() -> None:
    """Apply the migrations that have not been applied yet."""
    settings = _settings()
    with database_url(settings) as url:
        asyncio.run(wait_for_database(url, settings.database_wait))
        applied = asyncio.run(run_migrations(url, root=settings.project_id))
    click.echo(f"applied: {', '.join(applied)}" if applied else "the database is up to date")


def _read_secret(prompt: str, *, confirm: bool) -> str:
    """From standard input when it is not a terminal (one line), else a hidden prompt."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    value = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != value:
        raise click.ClickException("the two entries differ")
    return value


@main.group()
def users() -> None:
    """End users of the built-in store."""


@users.command("add")
@click.argument("username")
def users_add(username: str) -> None:
    """Add a user; the password comes from standard input or a prompt (argon2id-hashed)."""
    password = _read_secret("Password", confirm=True)

    async def work(url: str) -> str:
        async with await _connect(url) as conn:
            keys = await personal_keys(conn, settings.key_encryption_secret)
            user = await registration.register_user(
                conn, keys=keys, username=username, password=password, now=utc_now()
            )
        return user.user_id

    settings = _settings()
    try:
        user_id = _with_database(settings, work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username.strip().lower()} added (subject {user_id})")


def _operator(reason: str | None) -> dict[str, Any]:
    """Who asked, for the revocation event's metadata, and the operator's words why."""
    return _operator_metadata() | ({"note": reason} if reason else {})


@users.command("revoke-all")
@click.argument("username")
@click.option("--reason", default=None, help="Why, recorded with each revocation.")
def users_revoke_all(username: str, reason: str | None) -> None:
    """Revoke every live token family (grant) of a user and end their sign-in sessions."""

    settings = _settings()

    async def work(url: str) -> revocation.RevokedAll:
        async with await _connect(url) as conn:
            keys = await personal_keys(conn, settings.key_encryption_secret)
            return await revocation.revoke_all_of_user(
                conn, keys, username, utc_now(), _operator(reason)
            )

    try:
        revoked = _with_database(settings, work)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    for family_id in revoked.families:
        click.echo(f"family {family_id} revoked")
    who = username.strip().lower()
    click.echo(f"{len(revoked.families)} families of {who} revoked")
    click.echo(f"{revoked.sessions} sign-in sessions of {who} ended")


@users.command("erase")
@click.argument("username")
@click.option("--reason", default=None, help="Why, recorded with the erasure.")
def users_erase(username: str, reason: str | None) -> None:
    """Erase a user (crypto-shredding): delete their data key, so that no personal field
    of theirs in the log opens again; revoke their grants and end their sessions."""
    settings = _settings()

    async def work(url: str) -> erasure.Erased:
        async with await _connect(url) as conn:
            keys = await personal_keys(conn, settings.key_encryption_secret)
            return await erasure.erase_user(conn, keys, username, utc_now(), _operator(reason))

    try:
        erased = _with_database(settings, work)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {erased.user_id} erased: its data key is deleted")
    click.echo(f"{len(erased.revoked.families)} families revoked")
    click.echo(f"{erased.revoked.sessions} sign-in sessions ended")
    if not erased.shredded:
        click.echo(
            "warning: this user was registered before encryption; their username and"
            " password hash stay readable in the log",
            err=True,
        )


@main.group()
def families() -> None:
    """Token families: one grant each, with every token issued from it."""


@families.command("revoke")
@click.argument("family_id")
@click.option("--reason", default=None, help="Why, recorded with the revocation.")
def families_revoke(family_id: str, reason: str | None) -> None:
    """Revoke a family: its refresh tokens stop working, its access tokens introspect
    as inactive. Revoking a family already revoked changes nothing."""

    async def work(url: str) -> tuple[bool, bool]:
        async with await _connect(url) as conn:
            handled = await revocation.revoke_family(
                conn, family_id, "revoked_by_operator", utc_now(), _operator(reason)
            )
        return handled.state.version > 0, bool(handled.events)

    exists, revoked = _with_database(_settings(), work)
    if not exists:
        raise click.ClickException(f"no family {family_id}")
    click.echo(f"family {family_id} {'revoked' if revoked else 'was already revoked'}")


@main.group()
def clients() -> None:
    """OAuth clients."""


@clients.command("add")
@click.argument("client_id")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="A redirect URI; repeat for more. Loopback http URIs match any port.",
)
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE only).")
@click.option(
    "--secret-stdin",
    is_flag=True,
    help="Read the client secret from standard input instead of generating one.",
)
@click.option("--name", default=None, help="The name shown on the consent page.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope the client may request; repeat for more [default: the server's].",
)
@click.option(
    "--no-rotate",
    is_flag=True,
    help="Keep one refresh token for the grant's life instead of rotating it.",
)
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, 300),
    default=0,
    help="Accept the immediately previous refresh token this long after a rotation.",
)
@click.option("--audience", default=None, help="The aud of this client's access tokens.")
@click.option(
    "--publishable-key",
    is_flag=True,
    help="Also issue a publishable client key (x-stack-publishable-client-key).",
)
def clients_add(
    client_id: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    secret_stdin: bool,
    name: str | None,
    scopes: tuple[str, ...],
    no_rotate: bool,
    grace_seconds: int,
    audience: str | None,
    publishable_key: bool,
) -> None:
    """Register a client. A confidential client's secret is printed once."""
    if public and secret_stdin:
        raise click.UsageError("--public and --secret-stdin exclude each other")
    settings = _settings()
    secret = _read_secret("Client secret", confirm=True) if secret_stdin else None

    async def work(url: str) -> registration.RegisteredClient:
        async with await _connect(url) as conn:
            return await registration.register_client(
                conn,
                client_id=client_id,
                redirect_uris=list(redirect_uris),
                client_type="public" if public else "confidential",
                scopes=list(scopes) or list(settings.scopes_supported),
                now=utc_now(),
                name=name,
                secret=secret,
                rotate_refresh_tokens=not no_rotate,
                refresh_grace_seconds=grace_seconds,
                audience=audience,
            )

    try:
        registered = _with_database(settings, work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    kind = registered.client.client_type
    click.echo(f"client {client_id} registered ({kind})")
    if registered.secret is not None and not secret_stdin:
        click.echo(f"client_secret: {registered.secret}")
        click.echo("Store it now: only its hash is kept.", err=True)
    if publishable_key:
        _issue_publishable_key(settings, client_id)


def _issue_publishable_key(settings: Settings, client_id: str) -> None:
    from app.usecases import publishable_keys

    project_id = _project() or settings.project_id

    async def work(url: str) -> str:
        async with await _connect(url) as conn:
            return await publishable_keys.issue(
                conn, client_id, project_id, utc_now(), _operator_metadata()
            )

    try:
        key = _with_database(settings, work)
    except registration.Rejected as exc:
        raise click.ClickException(f"{client_id}: {exc}") from None
    click.echo(f"x-stack-project-id: {project_id}")
    click.echo(f"x-stack-publishable-client-key: {key}")
    click.echo("Only its hash is kept; a new one replaces it.", err=True)


@clients.command("publishable-key")
@click.argument("client_id")
def clients_publishable_key(client_id: str) -> None:
    """Issue the client a new publishable client key (replacing its previous one)."""
    _issue_publishable_key(_settings(), client_id)


@clients.command("require-api-key", hidden=True)
@click.argument("client_id")
@click.option("--off", is_flag=True, help="No longer require an API key.")
def clients_require_api_key(client_id: str, off: bool) -> None:
    """Kept for scripts: `clients update ID --require-api-key` / `--no-require-api-key`."""
    from app.usecases import clients as client_cases
    from ledger.clients import UpdateClient

    command = UpdateClient(require_api_key=not off, now=utc_now())
    _client_command(lambda conn: client_cases.update_client(conn, client_id, command))
    click.echo(f"client {client_id} {'no longer requires' if off else 'requires'} an API key")


@clients.group("api-keys")
def clients_api_keys() -> None:
    """API keys a client sends in the x-api-key header."""


@clients_api_keys.command("add")
@click.argument("client_id")
def clients_api_keys_add(client_id: str) -> None:
    """Add an API key; it is printed once (only its hash is kept)."""
    from app.usecases import api_keys

    async def work(url: str) -> api_keys.NewApiKey:
        async with await _connect(url) as conn:
            return await api_keys.add(conn, client_id, utc_now(), _operator_metadata())

    try:
        new = _with_database(_settings(), work)
    except registration.Rejected as exc:
        raise click.ClickException(f"{client_id}: {exc}") from None
    click.echo(f"api key {new.key_id} added to client {client_id}")
    click.echo(f"x-api-key: {new.key}")
    click.echo("Store it now: only its hash is kept.", err=True)


@clients_api_keys.command("list")
@click.argument("client_id")
def clients_api_keys_list(client_id: str) -> None:
    """Every API key of the client, active or revoked (ids and hash prefixes only)."""
    from app.usecases import api_keys

    async def work(url: str) -> list[api_keys.ApiKeyInfo]:
        async with await _connect(url) as conn:
            return await api_keys.list_keys(conn, client_id)

    try:
        keys = _with_database(_settings(), work)
    except registration.Rejected as exc:
        raise click.ClickException(f"{client_id}: {exc}") from None
    for k in keys:
        state = f"revoked {k.revoked_at.isoformat()}" if k.revoked_at else "active"
        click.echo(f"{k.key_id}\t{state}\tadded {k.added_at.isoformat()}\tsha256 {k.hash_prefix}")


@clients_api_keys.command("revoke")
@click.argument("client_id")
@click.argument("key_id")
def clients_api_keys_revoke(client_id: str, key_id: str) -> None:
    """Revoke an API key: it is refused from the next request on."""
    from app.usecases import api_keys

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await api_keys.revoke(conn, client_id, key_id, utc_now(), _operator_metadata())

    try:
        _with_database(_settings(), work)
    except registration.Rejected as exc:
        raise click.ClickException(f"{client_id}: {exc}") from None
    click.echo(f"api key {key_id} of client {client_id} revoked")


@main.group()
def projects() -> None:
    """Projects (tenants); see docs/tenancy.md. The root one (TOKENLEDGER_PROJECT_ID) is
    served at /, every other active one at /projects/ID."""


def _project_line(p: Any) -> str:
    if not p.recorded:
        state = "active (implicit: not recorded)"
    elif p.disabled_at is not None:
        state = f"disabled {p.disabled_at.isoformat()}"
    else:
        state = f"active, added {p.added_at.isoformat()}"
    # Where it is served: the root project at the server's own URLs, whatever its
    # recorded state; another project under /projects/ID while it is not disabled.
    if p.served:
        served = "served at /"
    elif p.disabled_at is None:
        served = f"served at /projects/{p.project_id}"
    else:
        served = "not served"
    return f"{p.project_id}\t{p.name}\t{state}\t{served}"


@projects.command("add")
@click.argument("project_id")
@click.option("--name", default=None, help="A name for people [default: the id].")
def projects_add(project_id: str, name: str | None) -> None:
    """Record a project: its own issuer, keys, clients, users and sessions."""
    from app.usecases import projects as project_cases

    settings = _settings()

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await project_cases.add(
                conn,
                project_id,
                name,
                utc_now(),
                _operator_metadata(),
                configured=settings.project_id,
            )

    try:
        _with_database(settings, work)
    except project_cases.Rejected as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"project {project_id} added")


@projects.command("list")
def projects_list() -> None:
    """Every project: recorded ones, and the root one even if never recorded."""
    from app.usecases import projects as project_cases

    settings = _settings()

    async def work(url: str) -> list[Any]:
        async with await _connect(url) as conn:
            return await project_cases.list_projects(conn, settings.project_id)

    for p in _with_database(settings, work):
        click.echo(_project_line(p))


@projects.command("show")
@click.argument("project_id")
def projects_show(project_id: str) -> None:
    """One project."""
    from app.usecases import projects as project_cases

    settings = _settings()

    async def work(url: str) -> Any:
        async with await _connect(url) as conn:
            return await project_cases.show(conn, project_id, settings.project_id)

    try:
        view = _with_database(settings, work)
    except project_cases.Rejected as exc:
        raise click.ClickException(f"{project_id}: {exc}") from None
    click.echo(_project_line(view))

    def own(value: Any, server: Any) -> str:
        if value is None:
            value, whose = server, "server"
        else:
            whose = "project"
        shown = " ".join(value) if isinstance(value, list | tuple) else f"{value} s"
        return f"{shown} ({whose})"

    click.echo(f"  scopes: {own(view.scopes, settings.scopes_supported)}")
    click.echo(f"  default scope: {own(view.default_scope, settings.default_scope)}")
    click.echo(f"  access token lifetime: {own(view.access_token_ttl, settings.access_token_ttl)}")
    click.echo(
        f"  refresh token lifetime: {own(view.refresh_token_ttl, settings.refresh_token_ttl)}"
    )


@projects.command("update")
@click.argument("project_id")
@click.option("--scope", "scopes", multiple=True, help="A scope the project supports (repeat).")
@click.option(
    "--default-scope", "default_scope", multiple=True, help="Granted when none is asked (repeat)."
)
@click.option("--access-ttl", type=click.IntRange(min=1), help="Access token lifetime, seconds.")
@click.option("--refresh-ttl", type=click.IntRange(min=1), help="Refresh token lifetime, seconds.")
@click.option(
    "--reset",
    multiple=True,
    type=click.Choice(["scopes", "default_scope", "access_token_ttl", "refresh_token_ttl"]),
    help="Go back to the server's value of this setting (repeat).",
)
def projects_update(
    project_id: str,
    scopes: tuple[str, ...],
    default_scope: tuple[str, ...],
    access_ttl: int | None,
    refresh_ttl: int | None,
    reset: tuple[str, ...],
) -> None:
    """Set a project's own scopes and lifetimes (what is not named keeps its value);
    its requests use them within TOKENLEDGER_KEY_REFRESH_INTERVAL seconds."""
    from app.usecases import projects as project_cases

    settings = _settings()
    change = project_cases.ChangeProjectSettings(
        scopes=scopes or None,
        default_scope=default_scope or None,
        access_token_ttl=access_ttl,
        refresh_token_ttl=refresh_ttl,
        clear=frozenset(reset),
        server_scopes=settings.scopes_supported,
        server_default_scope=settings.default_scope,
        now=utc_now(),
    )

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await project_cases.change_settings(
                conn, project_id, change, _operator_metadata(), configured=settings.project_id
            )

    try:
        _with_database(settings, work)
    except project_cases.Rejected as exc:
        raise click.ClickException(f"{project_id}: {exc}") from None
    click.echo(f"project {project_id} updated")


@projects.command("disable")
@click.argument("project_id")
def projects_disable(project_id: str) -> None:
    """Disable a project: its x-stack-project-id is refused from the next request on."""
    from app.usecases import projects as project_cases

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await project_cases.disable(conn, project_id, utc_now(), _operator_metadata())

    try:
        _with_database(_settings(), work)
    except project_cases.Rejected as exc:
        raise click.ClickException(f"{project_id}: {exc}") from None
    click.echo(f"project {project_id} disabled")


def _client_lines(client: Any) -> list[tuple[str, str]]:
    """Every field of a client but its secret's hash, as (label, value)."""

    def ttl(value: int | None) -> str:
        return "server default" if value is None else f"{value} s"

    def when(value: Any) -> str:
        return value.isoformat() if value is not None else "-"

    secret = "none (public)"
    if client.client_type == "confidential":
        secret = "set"
        if client.previous_secret_hash is not None:
            secret += f"; previous accepted until {when(client.previous_secret_expires_at)}"
    return [
        ("client_id", client.client_id),
        ("name", client.name),
        ("type", client.client_type),
        ("status", "disabled" if client.disabled else "enabled"),
        ("secret", secret),
        ("redirect_uris", " ".join(client.redirect_uris)),
        ("scopes", " ".join(client.scopes)),
        ("audiences", " ".join(client.allowed_audiences) or "server default"),
        ("rotate_refresh_tokens", "yes" if client.rotate_refresh_tokens else "no"),
        ("refresh_grace_seconds", str(client.refresh_grace_seconds)),
        ("access_token_ttl", ttl(client.access_token_ttl)),
        ("refresh_token_ttl", ttl(client.refresh_token_ttl)),
        (
            "refresh_idle_ttl",
            "none" if client.refresh_idle_ttl is None else ttl(client.refresh_idle_ttl),
        ),
        ("api_key", "required" if client.require_api_key else "not required"),
        ("registered_at", when(client.registered_at)),
        ("updated_at", when(client.updated_at)),
        ("version", str(client.version)),
    ]


def _client_command(work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    from app.usecases import clients as client_cases

    async def run(url: str) -> T:
        async with await _connect(url) as conn:
            return await work(conn)

    try:
        return _with_database(_settings(), run)
    except (client_cases.UnknownClient, client_cases.Rejected, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None


@clients.command("list")
def clients_list() -> None:
    """Every client: id, type, status, name."""
    from app.usecases import clients as client_cases

    for c in _client_command(client_cases.list_clients):
        status = "disabled" if c.disabled else "enabled"
        click.echo(f"{c.client_id}\t{c.client_type}\t{status}\t{c.name}")


@clients.command("show")
@click.argument("client_id")
def clients_show(client_id: str) -> None:
    """Every setting of a client (never its secret or the secret's hash)."""
    from app.usecases import clients as client_cases

    client = _client_command(lambda conn: client_cases.get_client(conn, client_id))
    for label, value in _client_lines(client):
        click.echo(f"{label + ':':<24}{value}")


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None, help="The name shown on the consent page.")
@click.option(
    "--redirect-uri", "redirect_uris", multiple=True, help="Replace the redirect URIs; repeat."
)
@click.option("--scope", "scopes", multiple=True, help="Replace the allowed scopes; repeat.")
@click.option(
    "--rotate/--no-rotate", default=None, help="Rotate refresh tokens on each use, or keep one."
)
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, 300),
    default=None,
    help="Accept the immediately previous refresh token this long after a rotation.",
)
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="Replace the allowed audiences; repeat. The first is the default aud.",
)
@click.option("--access-ttl", type=click.IntRange(1), default=None, help="Access token seconds.")
@click.option(
    "--refresh-ttl", type=click.IntRange(1), default=None, help="Refresh token absolute seconds."
)
@click.option(
    "--refresh-idle-ttl",
    type=click.IntRange(1),
    default=None,
    help="Refuse a refresh token unused for longer than this many seconds.",
)
@click.option(
    "--require-api-key/--no-require-api-key",
    default=None,
    help="Require one of the client's API keys (x-api-key) on its token, revocation and"
    " introspection requests, or stop requiring one (see `clients api-keys`).",
)
def clients_update(
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    rotate: bool | None,
    grace_seconds: int | None,
    audiences: tuple[str, ...],
    access_ttl: int | None,
    refresh_ttl: int | None,
    refresh_idle_ttl: int | None,
    require_api_key: bool | None,
) -> None:
    """Change a client's settings; what is not named keeps its value."""
    from app.usecases import clients as client_cases
    from ledger.clients import UpdateClient

    command = UpdateClient(
        name=name,
        redirect_uris=list(redirect_uris) or None,
        scopes=list(scopes) or None,
        rotate_refresh_tokens=rotate,
        refresh_grace_seconds=grace_seconds,
        audiences=list(audiences) or None,
        access_token_ttl=access_ttl,
        refresh_token_ttl=refresh_ttl,
        refresh_idle_ttl=refresh_idle_ttl,
        require_api_key=require_api_key,
        now=utc_now(),
    )
    client = _client_command(lambda conn: client_cases.update_client(conn, client_id, command))
    click.echo(f"client {client.client_id} updated")
    for label, value in _client_lines(client):
        click.echo(f"{label + ':':<24}{value}")


@clients.command("disable")
@click.argument("client_id")
def clients_disable(client_id: str) -> None:
    """Refuse the client everywhere (invalid_client; an error page at authorize); its
    grants stop refreshing. `enable` undoes it."""
    from app.usecases import clients as client_cases

    changed = _client_command(
        lambda conn: client_cases.set_enabled(conn, client_id, False, utc_now())
    )
    click.echo(f"client {client_id} {'disabled' if changed else 'was already disabled'}")


@clients.command("enable")
@click.argument("client_id")
def clients_enable(client_id: str) -> None:
    """Accept a disabled client again."""
    from app.usecases import clients as client_cases

    changed = _client_command(
        lambda conn: client_cases.set_enabled(conn, client_id, True, utc_now())
    )
    click.echo(f"client {client_id} {'enabled' if changed else 'was already enabled'}")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option(
    "--overlap",
    type=click.IntRange(0),
    default=3600,
    show_default=True,
    help="Seconds the old secret keeps working.",
)
def clients_rotate_secret(client_id: str, overlap: int) -> None:
    """Give a confidential client a new secret, printed once; the old one keeps working
    until the overlap ends."""
    from app.usecases import clients as client_cases

    rotated = _client_command(
        lambda conn: client_cases.rotate_secret(conn, client_id, overlap, utc_now())
    )
    click.echo(f"client_secret: {rotated.secret}")
    until = rotated.client.previous_secret_expires_at
    if until is not None:
        click.echo(f"The old secret works until {until.isoformat()}.", err=True)
    click.echo("Store it now: only its hash is kept.", err=True)


@main.group()
def keys() -> None:
    """Access token signing keys."""


@keys.command("rotate")
@click.option(
    "--alg",
    type=click.Choice(["RS256", "ES256", "EdDSA"]),
    default=None,
    help="The new key's algorithm [default: TOKENLEDGER_SIGNING_ALG].",
)
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="Sign with the new key at once, skipping TOKENLEDGER_KEY_PUBLISH_DELAY (tests;"
    " resource servers that cached the JWKS may refuse its tokens until they refetch).",
)
def keys_rotate(alg: str | None, at_once: bool) -> None:
    """Publish a new signing key now and sign with it after TOKENLEDGER_KEY_PUBLISH_DELAY;
    the current key stays published until the last token it signed has expired."""
    from app.usecases import keys as key_cases
    from ledger.errors import Rejected

    settings = _settings()

    async def work(url: str) -> key_cases.Rotation:
        async with await _connect(url) as conn:
            return await key_cases.rotate(
                conn,
                secret=settings.key_encryption_secret,
                alg=alg or settings.signing_alg,
                delay_seconds=0 if at_once else settings.key_publish_delay,
                max_token_ttl=await key_cases.longest_access_ttl(conn, settings.access_token_ttl),
                now=utc_now(),
            )

    try:
        rotation = _with_database(settings, work)
    except (Rejected, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    new, previous = rotation.new, rotation.previous
    click.echo(f"key {new.kid} ({new.alg}) published; signs from {new.activates_at.isoformat()}")
    if previous is not None and previous.unpublish_at is not None:
        click.echo(
            f"key {previous.kid} ({previous.alg}) signs until {new.activates_at.isoformat()},"
            f" published until {previous.unpublish_at.isoformat()}"
        )


@keys.command("list")
def keys_list() -> None:
    """Every key with its state: next (published, not signing yet), active (signing),
    retiring (published until its last token expires), retired (no longer published)."""
    from app.usecases import keys as key_cases

    async def work(url: str) -> list[Any]:
        async with await _connect(url) as conn:
            return await key_cases.list_keys(conn)

    now = utc_now()

    def when(value: Any) -> str:
        return value.isoformat() if value is not None else "-"

    for row in _with_database(_settings(), work, read_only=True):
        click.echo(
            f"{row.kid}\t{row.alg}\t{key_cases.key_status(row, now)}"
            f"\tcreated {when(row.created_at)}\tsigns from {when(row.activates_at)}"
            f"\tuntil {when(row.stops_signing_at)}\tpublished until {when(row.unpublish_at)}"
        )


@main.group()
def projections() -> None:
    """The read models folded from the event log."""


@projections.command("rebuild")
@click.option(
    "--verify",
    is_flag=True,
    help="Rebuild into a scratch schema and compare with the live tables instead.",
)
def projections_rebuild(verify: bool) -> None:
    """Replay the whole log through the projections."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from projections import rebuild as rb

    settings = _settings()

    async def work(url: str) -> rb.RebuildReport:
        async with await _connect(url) as conn:
            total = await rb.count_events(conn)
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=not sys.stderr.isatty(),
            ) as progress:
                task = progress.add_task("replaying events", total=total)

                def advance(done: int) -> None:
                    progress.update(task, completed=done)

                run = rb.verify if verify else rb.rebuild
                return await run(conn, advance)

    report = _with_database(settings, work, read_only=verify)
    click.echo(f"{report.events} events, {report.streams} streams replayed")
    for table, rows in report.rows.items():
        click.echo(f"  {table}: {rows} rows")
    if verify:
        if report.equal:
            click.echo("the live read models equal a rebuild from the log")
            return
        for table, keys in report.differences.items():
            if keys:
                click.echo(f"  {table} differs at: {', '.join(keys[:20])}", err=True)
        sys.exit(1)


@main.group()
def audit() -> None:
    """Check the event log."""
    ctx = click.get_current_context()
    command = ctx.invoked_subcommand
    if ctx.find_root().params.get("project") is not None and command not in (
        _PROJECT_AUDIT_COMMANDS
    ):
        _refuse_project(f"audit {command}")


@audit.command("verify")
@click.option("--stream", default=None, help="Only this stream.")
@click.option(
    "--seal",
    "seal_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Kept seals (JSON lines from `audit seals`): prove the log still holds what they"
    " covered and only grew since.",
)
def audit_verify(stream: str | None, seal_file: Path | None) -> None:
    """Recompute every hash chain, check the append-only triggers and, with --seal, the
    log against kept seals; name everything that does not verify."""
    from app.usecases import audit_seals
    from ledger.store import verify_chains

    kept = []
    if seal_file is not None:
        try:
            kept = audit_seals.parse_seals(seal_file.read_bytes().splitlines())
        except ValueError as exc:
            raise click.ClickException(f"{seal_file}: not seals: {exc}") from None
        if not kept:
            raise click.ClickException(f"{seal_file} holds no seal")

    async def work(url: str) -> tuple[list[Any], list[audit_seals.Finding]]:
        async with await _connect(url) as conn:
            breaks = await verify_chains(conn, stream)
            return breaks, await audit_seals.verify_against(conn, kept)

    breaks, findings = _with_database(_settings(), work, read_only=True)
    for b in breaks:
        click.echo(f"{b.stream_id} version {b.version}: {b.reason}", err=True)
    for finding in findings:
        click.echo(f"{finding.kind}: {finding.message}", err=True)
    if breaks or findings:
        sys.exit(1)
    click.echo("every hash chain verifies; the append-only triggers fire always")
    if kept:
        last = kept[-1]
        click.echo(
            f"the log holds exactly what {len(kept)} kept seals covered"
            f" (up to seal #{last.sequence}, {last.count} events) and only grew since"
        )


@audit.command("seal")
def audit_seal() -> None:
    """Seal the log now (the server also does, every TOKENLEDGER_SEAL_INTERVAL seconds)."""
    from app.usecases import audit_seals

    settings = _settings()

    async def work(url: str) -> Any:
        async with await _connect(url) as conn:
            key = await audit_seals.load_seal_key(conn, settings)
            return key, await audit_seals.seal_now(conn, key, utc_now())

    try:
        key, seal = _with_database(settings, work)
    except audit_seals.SealKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if not key.protected:
        click.echo(
            "warning: seals are not tamper-proof: their key is kept in the database;"
            " set TOKENLEDGER_KEY_ENCRYPTION_SECRET or TOKENLEDGER_SEAL_KEY_FILE",
            err=True,
        )
    if seal is None:
        click.echo("nothing new to seal", err=True)
        return
    click.echo(audit_seals.seal_json(seal).decode())


@audit.command("seals")
@click.option("--after", type=int, default=0, help="Only seals after this sequence number.")
def audit_seals_list(after: int) -> None:
    """Print the seals as JSON lines, oldest first: keep them to verify the log later."""
    from app.usecases import audit_seals

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            async for page in audit_seals.seal_pages(conn, after):
                for seal in page:
                    click.echo(audit_seals.seal_json(seal).decode())

    _with_database(_settings(), work, read_only=True)


@audit.command("seal-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def audit_seal_key(path: Path) -> None:
    """Write a new Ed25519 seal key to PATH (for TOKENLEDGER_SEAL_KEY_FILE)."""
    from app.usecases import audit_seals

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; not overwriting a key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(audit_seals.new_key_pem())
    click.echo(f"seal key written to {path}; set TOKENLEDGER_SEAL_KEY_FILE={path}")


@main.group()
def db() -> None:
    """Database roles."""


@db.command("create-runtime-role")
@click.argument("name")
def db_create_runtime_role(name: str) -> None:
    """Create (or update) a login role for `serve` with only what it needs: SELECT and
    INSERT on events, and the read models' rows. Run as the owner of the tables; the
    password comes from standard input or a prompt."""
    from app.adapters import roles

    password = _read_secret("Password for " + name, confirm=True)
    if not password:
        raise click.ClickException("the role needs a password")

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await roles.create_runtime_role(conn, name, password)

    try:
        _with_database(_settings(), work)
    except psycopg.Error as exc:
        raise click.ClickException(str(exc).strip()) from None
    click.echo(f"role {name} can now run `tokenledger serve --no-migrate`")


# --- auditors and their queries (issue 8) ------------------------------------------------


@main.group()
def auditors() -> None:
    """Auditors: credentials for /audit, separate from OAuth."""


def _operator_metadata() -> dict[str, Any]:
    return dict(handler.OPERATOR)


@auditors.command("add")
@click.argument("name")
@click.option(
    "--only-project",
    "only_project",
    metavar="ID",
    default=None,
    help="The auditor reads this project's streams only [default: every project's].",
)
def auditors_add(name: str, only_project: str | None) -> None:
    """Add an auditor; the token is printed once (only its hash is kept)."""
    from app.usecases import audit as audit_cases

    settings = _settings()

    async def work(url: str) -> str:
        async with await _connect(url) as conn:
            return await audit_cases.add_auditor(
                conn,
                name,
                utc_now(),
                _operator_metadata(),
                project=only_project,
                root=settings.project_id,
            )

    try:
        token = _with_database(settings, work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"auditor {name} added")
    click.echo(f"token: {token}")
    click.echo("Store it now: only its hash is kept.", err=True)


@auditors.command("list")
def auditors_list() -> None:
    """Every auditor, active or revoked, with how many queries each made."""
    from app.usecases import audit as audit_cases

    async def work(url: str) -> list[Any]:
        async with await _connect(url) as conn:
            return await audit_cases.list_auditors(conn)

    for a in _with_database(_settings(), work):
        state = f"revoked {a.revoked_at.isoformat()}" if a.revoked_at else "active"
        last = a.last_query_at.isoformat() if a.last_query_at else "never"
        scope = f"project {a.project}" if a.project is not None else "every project"
        click.echo(
            f"{a.name}\t{state}\tadded {a.added_at.isoformat()}\t{a.queries} queries"
            f"\tlast {last}\t{scope}"
        )


@auditors.command("revoke")
@click.argument("name")
def auditors_revoke(name: str) -> None:
    """Revoke an auditor: their token is refused from the next request on."""
    from app.usecases import audit as audit_cases

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            await audit_cases.revoke_auditor(conn, name, utc_now(), _operator_metadata())

    try:
        _with_database(_settings(), work)
    except audit_cases.AuditorRefused as exc:
        raise click.ClickException(f"{name}: {exc}") from None
    click.echo(f"auditor {name} revoked")


# --- resource servers (RFC 8707 targets) ----------------------------------------------


@main.group()
def resources() -> None:
    """Resource servers: the URLs (the MCP server's, as its RFC 9728 metadata names it)
    that access tokens may be for."""


@resources.command("add")
@click.argument("url")
@click.option("--scope", "scopes", multiple=True, help="A scope of this resource; repeat.")
def resources_add(url: str, scopes: tuple[str, ...]) -> None:
    """Register a resource server: clients may then ask tokens for it (only for the
    given scopes, when any are given)."""
    from app.usecases import resources as resource_cases

    async def work(db: str) -> None:
        async with await _connect(db) as conn:
            await resource_cases.add_resource(
                conn, url, list(scopes), utc_now(), _operator_metadata()
            )

    try:
        _with_database(_settings(), work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"resource {url} registered")


@resources.command("list")
def resources_list() -> None:
    """Every resource server, registered or removed, with its scopes."""
    from app.usecases import resources as resource_cases

    async def work(db: str) -> list[Any]:
        async with await _connect(db) as conn:
            return await resource_cases.list_resources(conn)

    for r in _with_database(_settings(), work):
        state = f"removed {r.removed_at.isoformat()}" if r.removed_at else "registered"
        click.echo(f"{r.url}\t{state}\t{' '.join(r.scopes) or '-'}")


@resources.command("remove")
@click.argument("url")
def resources_remove(url: str) -> None:
    """Remove a resource server: no request may name it from now on."""
    from app.usecases import resources as resource_cases

    async def work(db: str) -> None:
        async with await _connect(db) as conn:
            await resource_cases.remove_resource(conn, url, utc_now(), _operator_metadata())

    try:
        _with_database(_settings(), work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"resource {url} removed")


def _event_filter(
    stream: str | None,
    types: tuple[str, ...],
    client_id: str | None,
    subject: str | None,
    family_id: str | None,
    since: Any,
    until: Any,
    after: int | None,
) -> Any:
    from datetime import UTC

    from ledger.store import EventFilter

    def aware(t: Any) -> Any:
        return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t

    project = _project()
    return EventFilter(
        stream=stream,
        # With --project, that project's streams (and its clients, subjects, families).
        stream_prefix=None if project is None else f"{project}/",
        types=types,
        client_id=client_id,
        subject=subject,
        family_id=family_id,
        since=aware(since),
        until=aware(until),
        after_position=after,
    )


def _filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    time = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])
    for option in reversed(
        [
            click.option("--stream", default=None, help="One stream id (family:<uuid>, ...)."),
            click.option("--type", "types", multiple=True, help="An event type; repeatable."),
            click.option("--client-id", default=None, help="A client's streams."),
            click.option("--subject", default=None, help="A subject's streams."),
            click.option("--family-id", default=None, help="A family and its code."),
            click.option("--since", type=time, default=None, help="Recorded at or after (UTC)."),
            click.option("--until", type=time, default=None, help="Recorded before (UTC)."),
            click.option("--after", type=int, default=None, help="Positions above this."),
        ]
    ):
        f = option(f)
    return f


@audit.command("events")
@_filter_options
@click.option("--ndjson", is_flag=True, help="Every matching event, one JSON per line.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="Events per page.")
@click.option("--cursor", default=None, help="Resume after this cursor.")
def audit_events(
    stream: str | None,
    types: tuple[str, ...],
    client_id: str | None,
    subject: str | None,
    family_id: str | None,
    since: Any,
    until: Any,
    after: int | None,
    ndjson: bool,
    limit: int,
    cursor: str | None,
) -> None:
    """The log, filtered, in commit-safe order: one JSON page, or all as NDJSON."""
    import msgspec

    from app.usecases import audit as audit_cases
    from ledger.store import Checkpoint, parse_cursor

    where = _event_filter(stream, types, client_id, subject, family_id, since, until, after)
    try:
        start = parse_cursor(cursor) if cursor else Checkpoint()
    except ValueError:
        raise click.BadParameter("malformed cursor", param_hint="--cursor") from None
    out = sys.stdout.buffer

    async def work(url: str) -> None:
        async with await _connect(url) as conn:
            if ndjson:
                async for chunk in audit_cases.stream_ndjson(conn, where, start):
                    out.write(chunk)
            else:
                page = await audit_cases.events_page(conn, where, start, limit)
                out.write(msgspec.json.format(msgspec.json.encode(page)) + b"\n")

    _with_database(_settings(), work, read_only=True)
    out.flush()


@audit.command("family")
@click.argument("family_id")
def audit_family(family_id: str) -> None:
    """One family's whole life as JSON: code, rotations, reuse, revocation."""
    import msgspec

    from app.usecases import audit as audit_cases

    async def work(url: str) -> Any:
        async with await _connect(url) as conn:
            return await audit_cases.family_timeline(conn, family_id)

    timeline = _with_database(_settings(), work, read_only=True)
    if timeline is None:
        raise click.ClickException(f"no family {family_id}")
    click.echo(msgspec.json.format(msgspec.json.encode(timeline)).decode())


@audit.command("export")
@_filter_options
def audit_export(
    stream: str | None,
    types: tuple[str, ...],
    client_id: str | None,
    subject: str | None,
    family_id: str | None,
    since: Any,
    until: Any,
    after: int | None,
) -> None:
    """Every matching event as NDJSON on standard output, a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from app.usecases import audit as audit_cases
    from ledger.store import Checkpoint, count_logged

    where = _event_filter(stream, types, client_id, subject, family_id, since, until, after)
    out = sys.stdout.buffer

    async def work(url: str) -> int:
        done = 0
        async with await _connect(url) as conn:
            total = await count_logged(conn, where)
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=not sys.stderr.isatty(),
            ) as progress:
                task = progress.add_task("exporting events", total=total)
                async for chunk in audit_cases.stream_ndjson(conn, where, Checkpoint()):
                    out.write(chunk)
                    done += chunk.count(b"\n")  # JSON holds no raw newline
                    progress.update(task, completed=done)
        return done

    count = _with_database(_settings(), work, read_only=True)
    out.flush()
    click.echo(f"{count} events exported", err=True)
