"""The ``tokenledger`` command: serve, migrate, register users and clients, rebuild."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
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
)
from app.http.context import utc_now
from app.logging import configure
from app.settings import Settings, SettingsError, from_env
from app.usecases import registration, revocation

if TYPE_CHECKING:
    import uvicorn

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return from_env()
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
                await run_migrations(url)
            return await work(url)

        try:
            return asyncio.run(run())
        except SchemaBehind as exc:
            raise click.ClickException(str(exc)) from None


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


@click.group()
def main() -> None:
    """tokenledger: an OAuth 2.1 authorization server on an append-only event ledger."""
    # Operator commands log only what needs attention; `serve` logs every request.
    configure(level=logging.WARNING)


@main.command()
@click.option("--host", default=None, help="Address to listen on [TOKENLEDGER_HOST].")
@click.option("--port", type=int, default=None, help="Port to listen on [TOKENLEDGER_PORT].")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not migrate (run as the runtime role, which cannot): refuse a schema behind.",
)
def serve(host: str | None, port: int | None, no_migrate: bool) -> None:
    """Migrate the database and serve HTTP (embedded PostgreSQL without DATABASE_URL)."""
    import uvicorn

    from app.http.app import create_app

    settings = _settings()
    configure(settings.log_json)
    with database_url(settings) as url:
        try:
            asyncio.run(require_current_schema(url) if no_migrate else run_migrations(url))
        except SchemaBehind as exc:
            raise click.ClickException(str(exc)) from None
        app = create_app(settings, url)
        uvicorn.Server(uvicorn_config(app, settings, host=host, port=port)).run()


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
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's records go to the root logger: JSON like ours
        proxy_headers=True,
        timeout_keep_alive=settings.http_keep_alive_timeout,
        limit_concurrency=settings.http_limit_concurrency,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        http=read_timeout_protocol(settings.http_read_timeout, settings.http_max_header_bytes),
    )


@main.command()
def migrate() -> None:
    """Apply the migrations that have not been applied yet."""
    settings = _settings()
    with database_url(settings) as url:
        applied = asyncio.run(run_migrations(url))
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
            user = await registration.register_user(
                conn, username=username, password=password, now=utc_now()
            )
        return user.user_id

    try:
        user_id = _with_database(_settings(), work)
    except (ValueError, registration.Rejected) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username.strip().lower()} added (subject {user_id})")


def _operator(reason: str | None) -> dict[str, Any]:
    """Who asked, for the revocation event's metadata, and the operator's words why."""
    return {"actor": "cli"} | ({"note": reason} if reason else {})


@users.command("revoke-all")
@click.argument("username")
@click.option("--reason", default=None, help="Why, recorded with each revocation.")
def users_revoke_all(username: str, reason: str | None) -> None:
    """Revoke every live token family (grant) of a user and end their sign-in sessions."""

    async def work(url: str) -> revocation.RevokedAll:
        async with await _connect(url) as conn:
            return await revocation.revoke_all_of_user(conn, username, utc_now(), _operator(reason))

    try:
        revoked = _with_database(_settings(), work)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    for family_id in revoked.families:
        click.echo(f"family {family_id} revoked")
    who = username.strip().lower()
    click.echo(f"{len(revoked.families)} families of {who} revoked")
    click.echo(f"{revoked.sessions} sign-in sessions of {who} ended")


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

    report = _with_database(_settings(), work, read_only=verify)
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

    async def work(url: str) -> list[Any]:
        async with await _connect(url) as conn:
            return await audit_seals.list_seals(conn, after)

    for seal in _with_database(_settings(), work, read_only=True):
        click.echo(audit_seals.seal_json(seal).decode())


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
    return {"actor": "operator", "client_ip": None, "request_id": None, "user_agent": "cli"}


@auditors.command("add")
@click.argument("name")
def auditors_add(name: str) -> None:
    """Add an auditor; the token is printed once (only its hash is kept)."""
    from app.usecases import audit as audit_cases

    async def work(url: str) -> str:
        async with await _connect(url) as conn:
            return await audit_cases.add_auditor(conn, name, utc_now(), _operator_metadata())

    try:
        token = _with_database(_settings(), work)
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
        click.echo(
            f"{a.name}\t{state}\tadded {a.added_at.isoformat()}\t{a.queries} queries\tlast {last}"
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

    return EventFilter(
        stream=stream,
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
                async for event in audit_cases.stream_events(conn, where, start):
                    out.write(msgspec.json.encode(event) + b"\n")
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
    import msgspec
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
                buffer = bytearray()
                async for event in audit_cases.stream_events(conn, where, Checkpoint()):
                    buffer += msgspec.json.encode(event) + b"\n"
                    done += 1
                    if len(buffer) >= 65536:
                        out.write(buffer)
                        buffer.clear()
                        progress.update(task, completed=done)
                out.write(buffer)
                progress.update(task, completed=done)
        return done

    count = _with_database(_settings(), work, read_only=True)
    out.flush()
    click.echo(f"{count} events exported", err=True)
