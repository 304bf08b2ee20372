"""Sign-in throttling per account and per client address, kept in PostgreSQL so that
every replica counts the same failures (docs/security.md, A11); and the same fixed
windows for dynamic client registrations per address (RFC 7591, R9), and for token
requests per client and per address (``reserve``, docs/security.md T-rate).

A key that reached its limit of failures inside the current window is refused until
the window ends. Unknown usernames are counted like known ones, so the throttle tells
nothing about which accounts exist.

An attempt is *reserved* (counted as a failure) before the password is checked, in one
statement per key that only counts while under the limit, and released if the password
was right (A18). Reading the count, checking, and recording afterwards let forty
parallel guesses all be checked against a limit of ten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from projections import tenancy


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


_RESERVE = (
    "insert into login_throttle as t (key, window_start, failures) values (%(key)s, %(now)s, 1)"
    " on conflict (key) do update set"
    "  failures = case when t.window_start <= %(expired)s then 1 else t.failures + 1 end,"
    "  window_start = case when t.window_start <= %(expired)s then excluded.window_start"
    "                 else t.window_start end"
    " where t.window_start <= %(expired)s or t.failures < %(limit)s"
    " returning failures"
)


async def reserve_attempt(
    conn: psycopg.AsyncConnection[Any],
    username: str,
    address: str | None,
    limits: Limits,
    now: datetime,
) -> bool:
    """Count this attempt as a failure, before it is checked; False (and nothing counted)
    when the account or the address is already at its limit.

    The conditional upsert takes the key's row lock, so parallel attempts queue on it
    and each sees the count of the ones before: at most ``limit`` get through.
    """
    wanted = keys(username, address)
    limit_of = {"account": limits.per_account, "address": limits.per_address}
    async with conn.transaction():
        for kind in ("account", "address"):  # always this order: no deadlock between keys
            if kind not in wanted:
                continue
            cur = await conn.execute(
                _RESERVE,
                {
                    "key": wanted[kind],
                    "now": now,
                    "expired": now - limits.window,
                    "limit": limit_of[kind],
                },
            )
            if await cur.fetchone() is None:
                raise psycopg.Rollback()  # undo the other key's count too; refused
        return True
    return False


async def release_attempt(
    conn: psycopg.AsyncConnection[Any], username: str, address: str | None
) -> None:
    """The password was right: forget the account's failures, and give the address back
    the attempt reserved for it (a sign-in is not a failure)."""
    wanted = keys(username, address)
    async with conn.transaction():
        await conn.execute("delete from login_throttle where key = %s", (wanted["account"],))
        if "address" in wanted:
            await conn.execute(
                "update login_throttle set failures = greatest(failures - 1, 0) where key = %s",
                (wanted["address"],),
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
    under the limit (as A18 for sign-ins)."""
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


async def forget_account(conn: psycopg.AsyncConnection[Any], username: str) -> None:
    """Drop the account's failure count: its key holds the username (``users erase``)."""
    await conn.execute(
        "delete from login_throttle where key = %s", (keys(username, None)["account"],)
    )


async def reserve(
    conn: psycopg.AsyncConnection[Any],
    limits: Sequence[tuple[str, int]],
    window: timedelta,
    now: datetime,
) -> timedelta | None:
    """Count one request against each ``(key, limit)`` in ``rate_limits``; when any key
    goes past its limit inside its current window, the time until that window ends,
    else None. One statement for every key (autocommit: the row locks last only as long
    as it), counted before the work, so parallel requests cannot all slip under a limit
    and every replica sees the same counts. A limit of 0 is off."""
    counting = await start_reserve(conn, limits, window, now)
    return await counting.result() if counting is not None else None


class Leases:
    """Hit numbers drawn from ``rate_limits`` in batches, held by one process.

    Every request a limit admits holds one number of its key's window, and a number
    above the limit is a refusal; the numbers are handed out by the key's row in
    PostgreSQL, so replicas share them and no window admits more than its limit. One
    statement counts a batch (``size``) and this process hands the batch's numbers to
    its next requests with no round trip; the key's shared row then takes one update
    per batch instead of one per request, which is what every token request of a busy
    client would otherwise queue on. The price: numbers a process holds when the window
    ends go unused, so a key may be refused up to ``size - 1`` requests early per
    process. A limit under ``64 * 2`` counts one request per statement, as before.
    """

    BATCH = 32
    SWEEP_AT = 4096  # keys held before the expired ones are swept out

    def __init__(self) -> None:
        # (project, key) -> the held ranges: [window_start, next number, last number]
        self._held: dict[tuple[str | None, str], list[list[Any]]] = {}

    def size(
        self, scope: str | None, key: str, limit: int, now: datetime, window: timedelta
    ) -> int:
        """How many numbers to ask for: a batch, or one near the limit (the last
        numbers this process got are within a batch of it), so that few go unused."""
        batch = max(1, min(self.BATCH, limit // 64))
        held = self._held.get((scope, key))
        if held and held[-1][0] + window > now and held[-1][2] + batch > limit:
            return 1
        return batch

    def take(
        self, scope: str | None, key: str, now: datetime, window: timedelta
    ) -> tuple[int, datetime] | None:
        """The next number held for ``key`` in its current window, with the window's
        start; None when none is held (a statement must count)."""
        held = self._held.get((scope, key), [])
        while held:
            start, number, last = held[0]
            if start + window <= now:
                held.pop(0)
            elif number <= last:
                held[0][1] = number + 1
                return number, start
            elif len(held) == 1:
                return None  # kept: the last numbers got, for ``size``
            else:
                held.pop(0)
        return None

    def add(
        self,
        scope: str | None,
        key: str,
        start: datetime,
        first: int,
        last: int,
        now: datetime,
        window: timedelta,
    ) -> None:
        """Hold the numbers ``first`` to ``last`` of the window starting at ``start``."""
        if len(self._held) >= self.SWEEP_AT:
            expired = [k for k, h in self._held.items() if not h or h[-1][0] + window <= now]
            for k in expired:
                del self._held[k]
        if first <= last:
            self._held.setdefault((scope, key), []).append([start, first, last])


@dataclass
class Counting:
    """A ``reserve`` sent, perhaps in a pipeline; ``result`` reads its answer."""

    cursor: psycopg.AsyncCursor[Any] | None  # None: every key had a number held
    wanted: list[tuple[str, int]]
    window: timedelta
    now: datetime
    numbers: dict[str, tuple[int, datetime]]  # key -> (its number, its window's start)
    sizes: dict[str, int]  # the keys the statement counts -> numbers asked for
    leases: Leases | None
    scope: str | None

    async def result(self) -> timedelta | None:
        numbers = dict(self.numbers)
        if self.cursor is not None:
            for key, hits, start in await self.cursor.fetchall():
                first = int(hits) - self.sizes[key] + 1
                numbers[key] = (first, start)
                if self.leases is not None:
                    self.leases.add(
                        self.scope, key, start, first + 1, int(hits), self.now, self.window
                    )
        # A key the statement left out (``only_if_client``) was not counted.
        over = [
            numbers[key][1]
            for key, limit in self.wanted
            if key in numbers and numbers[key][0] > limit
        ]
        if not over:
            return None
        left: timedelta = max(over) + self.window - self.now
        return max(left, timedelta(seconds=1))


async def start_reserve(
    conn: psycopg.AsyncConnection[Any],
    limits: Sequence[tuple[str, int]],
    window: timedelta,
    now: datetime,
    *,
    only_if_client: tuple[str, str] | None = None,
    leases: Leases | None = None,
) -> Counting | None:
    """``reserve``, sent but not yet read, so that it can share a pipeline (and so a
    round trip) with another statement; None when every limit is off. With ``leases``,
    a key whose number this process already holds is not sent at all, and the others
    ask for a batch of numbers.

    ``only_if_client``: ``(key, client_id)``, a key counted only when that client is
    registered (made-up client ids add no rows), judged in the same statement, so the
    count need not wait for the client's lookup."""
    wanted = sorted((key, limit) for key, limit in limits if limit > 0)  # one lock order
    if not wanted:
        return None
    scope = tenancy.project_of(conn)
    numbers: dict[str, tuple[int, datetime]] = {}
    sizes: dict[str, int] = {}
    for key, limit in wanted:
        held = leases.take(scope, key, now, window) if leases is not None else None
        if held is not None:
            numbers[key] = held
        else:
            sizes[key] = leases.size(scope, key, limit, now, window) if leases else 1
    cur = None
    if sizes:
        expired_before = now - window
        guard_key, guard_client = only_if_client or (None, None)
        cur = conn.cursor()
        await cur.execute(
            "insert into rate_limits as t (key, window_start, hits)"
            " select k, %s, n from unnest(%s::text[], %s::int[]) as u(k, n)"
            " where %s::text is null or k <> %s::text"
            "  or exists (select 1 from clients where client_id = %s)"
            " on conflict (key) do update set"
            "  hits = case when t.window_start <= %s then excluded.hits"
            "         else t.hits + excluded.hits end,"
            "  window_start = case when t.window_start <= %s then excluded.window_start"
            "                 else t.window_start end"
            " returning key, hits, window_start",
            (
                now,
                list(sizes),
                list(sizes.values()),
                guard_key,
                guard_key,
                guard_client,
                expired_before,
                expired_before,
            ),
        )
    return Counting(cur, wanted, window, now, numbers, sizes, leases, scope)
