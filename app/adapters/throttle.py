"""Sign-in throttling per account and per client address, kept in PostgreSQL so that
every replica counts the same failures (docs/security.md, A11); and the same fixed
windows for dynamic client registrations per address (RFC 7591, R9).

A key that reached its limit of failures inside the current window is refused until
the window ends. Unknown usernames are counted like known ones, so the throttle tells
nothing about which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg


@dataclass(frozen=True)
class Limits:
    per_account: int
    per_address: int
    window: timedelta


def keys(username: str, address: str | None) -> dict[str, str]:
    found = {"account": f"account:{username.strip().lower()}"}
    if address:
        found["address"] = f"ip:{address}"
    return found


async def is_blocked(
    conn: psycopg.AsyncConnection[Any],
    username: str,
    address: str | None,
    limits: Limits,
    now: datetime,
) -> bool:
    wanted = keys(username, address)
    cur = await conn.execute(
        "select key, failures from login_throttle where key = any(%s) and window_start > %s",
        (list(wanted.values()), now - limits.window),
    )
    counts = dict(await cur.fetchall())
    return counts.get(wanted["account"], 0) >= limits.per_account or (
        "address" in wanted and counts.get(wanted["address"], 0) >= limits.per_address
    )


async def record_failure(
    conn: psycopg.AsyncConnection[Any],
    username: str,
    address: str | None,
    limits: Limits,
    now: datetime,
) -> None:
    expired_before = now - limits.window
    async with conn.cursor() as cur:
        await cur.executemany(
            "insert into login_throttle as t (key, window_start, failures) values (%s, %s, 1)"
            " on conflict (key) do update set"
            "  failures = case when t.window_start <= %s then 1 else t.failures + 1 end,"
            "  window_start = case when t.window_start <= %s then excluded.window_start"
            "                 else t.window_start end",
            [
                (key, now, expired_before, expired_before)
                for key in keys(username, address).values()
            ],
        )


async def clear_account(conn: psycopg.AsyncConnection[Any], username: str) -> None:
    await conn.execute(
        "delete from login_throttle where key = %s", (keys(username, None)["account"],)
    )


async def reserve_registration(
    conn: psycopg.AsyncConnection[Any],
    address: str | None,
    limit: int,
    window: timedelta,
    now: datetime,
) -> timedelta | None:
    """Count one registration for ``address``; when that goes past ``limit`` inside the
    current window, the time until the window ends, else None. Counted before the
    registration is written, in one statement, so that parallel requests cannot all slip
    under the limit (as A12 for sign-ins)."""
    if address is None:
        return None
    expired_before = now - window
    cur = await conn.execute(
        "insert into registration_throttle as t (key, window_start, registrations)"
        " values (%s, %s, 1)"
        " on conflict (key) do update set"
        "  registrations = case when t.window_start <= %s then 1"
        "                  else t.registrations + 1 end,"
        "  window_start = case when t.window_start <= %s then excluded.window_start"
        "                 else t.window_start end"
        " returning registrations, window_start",
        (f"ip:{address}", now, expired_before, expired_before),
    )
    row = await cur.fetchone()
    assert row is not None
    registrations, window_start = row
    if int(registrations) <= limit:
        return None
    left: timedelta = window_start + window - now
    return max(left, timedelta(seconds=1))
