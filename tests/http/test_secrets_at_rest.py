"""L3: no issued code, token, client secret or password is stored anywhere in the database."""

from __future__ import annotations

from typing import Any

import psycopg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from psycopg import sql

from tests.http.conftest import (
    INITIAL_ACCESS_TOKEN,
    PASSWORD,
    Registered,
    authorize,
    exchange,
    refresh,
)


async def _everything_stored(conn: psycopg.AsyncConnection[Any]) -> str:
    """Every row of every table in the schema, as text (what a dump would show)."""
    cur = await conn.execute(
        "select table_name from information_schema.tables"
        " where table_schema = 'public' and table_type = 'BASE TABLE'"
    )
    texts = []
    for (table,) in await cur.fetchall():
        rows = await conn.execute(
            sql.SQL("select coalesce(string_agg(t::text, E'\\n'), '') from {} t").format(
                sql.Identifier(table)
            )
        )
        row = await rows.fetchone()
        assert row is not None
        texts.append(row[0])
    return "\n".join(texts)


async def test_a_dump_holds_no_secret(
    client: AsyncTestClient[Litestar],
    confidential_client: Registered,
    user: str,
    conn: psycopg.AsyncConnection[Any],
) -> None:
    code, verifier, _ = await authorize(client, confidential_client, user)
    first = (await exchange(client, confidential_client, code, verifier)).json()
    second = (await refresh(client, confidential_client, first["refresh_token"])).json()
    issued = {
        "authorization code": code,
        "first access token": first["access_token"],
        "first refresh token": first["refresh_token"],
        "second access token": second["access_token"],
        "second refresh token": second["refresh_token"],
        "client secret": confidential_client.secret,
        "password": PASSWORD,
    }
    dump = await _everything_stored(conn)
    assert confidential_client.client_id in dump  # the dump is real, and has this flow in it
    for name, value in issued.items():
        assert value
        assert value not in dump, f"the {name} is stored in plain text"
        # Nor the access token's signature, which is the part that cannot be forged.
        if name.endswith("access token"):
            assert value.rsplit(".", 1)[1] not in dump


async def test_a_dump_holds_no_dynamically_registered_secret(
    client: AsyncTestClient[Litestar], conn: psycopg.AsyncConnection[Any]
) -> None:
    """R4: the secret of a client registered through RFC 7591 is answered, never stored."""
    answer = await client.post(
        "/oauth/register",
        json={
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        },
        headers={"Authorization": f"Bearer {INITIAL_ACCESS_TOKEN}"},
    )
    assert answer.status_code == 201, answer.text
    registered = answer.json()
    dump = await _everything_stored(conn)
    assert registered["client_id"] in dump
    assert registered["client_secret"] not in dump
