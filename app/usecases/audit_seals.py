"""Seals: make one, hand them out, and verify the log against the ones an auditor kept.

The seal key is out of the database's reach when it can be: read from
TOKENLEDGER_SEAL_KEY_FILE, or derived from TOKENLEDGER_KEY_ENCRYPTION_SECRET (neither is
in the database, so a database writer cannot sign a seal). Without either the key is a
random one kept in the database, and the server warns that seals are not tamper-proof.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import AsyncConnectionPool

from app.adapters.keys import instance_secret
from app.settings import Settings
from app.usecases import handler
from ledger import seals, store
from ledger.events import LedgerSealed
from ledger.keys import derive_key
from ledger.streams import SEALS

log = structlog.get_logger(__name__)

SEAL_STREAM = SEALS.id(seals.STREAM_KEY)
# One sealer at a time across replicas: 'tlseals' as a bigint.
_SEAL_LOCK = 0x746C7365616C73
# The triggers that make the log append-only (migrations/001_events.sql).
GUARD_TRIGGERS = ("events_chain", "events_no_truncate", "events_no_update_delete")
_TRIGGER_STATES = {"O": "ENABLE (origin only)", "R": "ENABLE REPLICA", "D": "DISABLED"}


class SealKeyError(Exception):
    """The configured seal key cannot be read."""


@dataclass(frozen=True)
class SealKey:
    private: Ed25519PrivateKey
    source: str
    protected: bool  # out of a database writer's reach

    @property
    def public(self) -> str:
        return seals.public_key_text(self.private)


async def load_seal_key(conn: psycopg.AsyncConnection[Any], settings: Settings) -> SealKey:
    if settings.seal_key_file is not None:
        try:
            pem = settings.seal_key_file.read_bytes()
            key = serialization.load_pem_private_key(pem, None)
        except (OSError, ValueError, TypeError) as exc:
            raise SealKeyError(f"TOKENLEDGER_SEAL_KEY_FILE: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SealKeyError("TOKENLEDGER_SEAL_KEY_FILE must hold an Ed25519 private key")
        return SealKey(key, "TOKENLEDGER_SEAL_KEY_FILE", protected=True)
    if settings.key_encryption_secret:
        seed = derive_key(settings.key_encryption_secret, "seal key")
        return SealKey(
            Ed25519PrivateKey.from_private_bytes(seed),
            "TOKENLEDGER_KEY_ENCRYPTION_SECRET",
            protected=True,
        )
    seed = await instance_secret(conn, "seal_ed25519_seed", None)
    return SealKey(Ed25519PrivateKey.from_private_bytes(seed), "database", protected=False)


def new_key_pem() -> bytes:
    """A fresh Ed25519 key for TOKENLEDGER_SEAL_KEY_FILE."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def _newest(conn: psycopg.AsyncConnection[Any]) -> seals.SealState:
    last = await store.last_event(conn, SEAL_STREAM)
    if last is None:
        return seals.INITIAL
    assert isinstance(last.event, LedgerSealed)
    if not seals.signature_valid(last.event):
        raise SealKeyError(
            f"the log's newest seal (#{last.version}) does not verify; not extending it"
        )
    return seals.evolve(seals.SealState(version=last.version - 1), last.event)


async def newest_seal_time(conn: psycopg.AsyncConnection[Any]) -> datetime | None:
    """When the newest seal was made (the metrics' seal lag); None before the first."""
    last = await store.last_event(conn, SEAL_STREAM)
    if last is None or not isinstance(last.event, LedgerSealed):
        return None
    return last.event.sealed_at


class _HeldBack(Exception):
    """Events wait beyond the horizon: an older transaction somewhere is still open."""


# The most events one seal covers: a backlog (a log sealed for the first time, events
# written while no server ran its sealer) is sealed in several. A seal names every
# stream it covers and is read back whole to make the next one, so an unbounded seal
# grew with the backlog: 24 MB for a million events, decoded on the server's event loop
# for three seconds.
SEAL_MAX_EVENTS = 10_000


async def seal_now(
    conn: psycopg.AsyncConnection[Any],
    key: SealKey,
    now: datetime,
    *,
    patience: float = 0.0,
    limit: int = SEAL_MAX_EVENTS,
) -> LedgerSealed | None:
    """Seal every event below the horizon, if any but seals were written since the last
    seal and no other sealer is at work, in seals of at most ``limit`` events, each in a
    transaction of its own; the newest seal made, or None.

    The xid8 horizon is the whole server's: any open transaction (of any database) holds
    it back. With ``patience``, wait up to that many seconds for it to pass events that
    are written but not yet below it (the shutdown seal, and tests)."""
    deadline = asyncio.get_running_loop().time() + patience
    newest = None
    while True:
        try:
            made = await handler.run(
                conn, {"actor": "system"}, lambda tx: _seal(tx, key, now, patience > 0, limit)
            )
        except _HeldBack:
            if asyncio.get_running_loop().time() >= deadline:
                return newest
            await asyncio.sleep(0.05)
            continue
        if made is None:
            return newest
        newest, more = made
        if not more:
            return newest


async def _seal(
    tx: handler.Transaction, key: SealKey, now: datetime, report_held_back: bool, limit: int
) -> tuple[LedgerSealed, bool] | None:
    """The next seal, and whether events below the horizon are left for another."""
    if not await store.try_xact_lock(tx.conn, _SEAL_LOCK):
        return None
    state = await _newest(tx.conn)
    if state.public_key and state.public_key != key.public:
        log.warning("the seal key changed since the last seal", seal=state.version)
    after = store.Checkpoint(tx=state.tx, position=state.position)
    head = await store.horizon_head(tx.conn)
    if (
        head is None
        or (head.tx, head.position) <= (after.tx, after.position)
        or not await store.written_between(tx.conn, after, head, besides=SEAL_STREAM)
    ):
        head = None
    if head is None:
        if report_held_back:
            end = await store.log_end(tx.conn)
            if end is not None and await store.written_between(
                tx.conn, after, end, besides=SEAL_STREAM
            ):
                raise _HeldBack
        return None
    tree = state.tree()
    written: dict[str, tuple[int, str]] = {}
    last = after
    # aclosing: leaves holds a transaction open on tx.conn until it is closed; left
    # suspended by an exception here, it would end only when collected.
    async with aclosing(store.leaves(tx.conn, after, head, limit=limit)) as found:
        async for leaf in found:
            tree.append(leaf.digest)
            written[leaf.stream_id] = (leaf.version, leaf.digest.hex())
            last = store.Checkpoint(tx=leaf.tx, position=leaf.position)
    seal = seals.new_seal(
        state, tree, tx=last.tx, position=last.position, streams=written, key=key.private, now=now
    )
    handled = await tx.handle(SEALS, seals.STREAM_KEY, seals.RecordSeal(seal=seal), loaded=state)
    handled.or_raise()
    return seal, last != head


# Seals read at a time: a seal names the streams of up to 10,000 events (up to about
# 1 MB), and a server seals every few seconds, so nothing reads them all at once.
SEALS_PAGE = 16


async def list_seals(
    conn: psycopg.AsyncConnection[Any], after: int = 0, limit: int | None = None
) -> list[LedgerSealed]:
    """The seals after sequence ``after``, oldest first, at most ``limit`` (None: all)."""
    found = []
    for recorded in await store.read_stream(conn, SEAL_STREAM, after=after, limit=limit):
        assert isinstance(recorded.event, LedgerSealed)
        found.append(recorded.event)
    return found


async def seal_pages(
    conn: psycopg.AsyncConnection[Any], after: int = 0
) -> AsyncIterator[list[LedgerSealed]]:
    """Every seal after sequence ``after``, oldest first, :data:`SEALS_PAGE` at a time
    (a seal's sequence is its version in the seal stream): what auditors keep."""
    while page := await list_seals(conn, after, SEALS_PAGE):
        yield page
        after = page[-1].sequence


def seal_json(seal: LedgerSealed) -> bytes:
    """One line of ``tokenledger audit seals`` and one item of ``GET /audit/seals``."""
    return msgspec.json.encode(seal)


class NotSeals(ValueError):
    """What an auditor handed back is not seals; the message says where and why."""


class TooManyStreams(NotSeals):
    """The kept seals name more streams than one verification takes."""


# Kept seals come from outside: their numbers go into queries as PostgreSQL int and
# bigint, and their streams into a text[] (no NUL), so anything else is refused here,
# where they are read, not wherever it would break.
_Int64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Version = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]  # events.version: integer > 0
_StreamId = Annotated[str, msgspec.Meta(min_length=1, pattern="^[^\\x00]*$")]


class _KeptSeal(msgspec.Struct, kw_only=True, tag_field="type", tag="ledger_sealed"):
    """A kept seal as read: :class:`LedgerSealed`'s fields, those the verification hands
    to the database or unpacks as strictly as the log makes them. A seal names up to
    10,000 streams, so each line is decoded once, into this, and the event built from it."""

    sequence: _Version  # the seal's version in its stream
    tx: _Int64
    position: _Int64
    count: _Int64
    root: str
    previous: str
    frontier: list[str]
    streams: dict[_StreamId, tuple[_Version, str]]
    public_key: str
    sealed_at: datetime
    signature: str

    def event(self) -> LedgerSealed:
        fields = msgspec.structs.asdict(self)
        # As the log decodes them: [version, digest] lists, which the signature covers.
        fields["streams"] = {
            sid: [version, digest] for sid, (version, digest) in self.streams.items()
        }
        return LedgerSealed(**fields)


def parse_seals(lines: Sequence[bytes | str], max_streams: int | None = None) -> list[LedgerSealed]:
    """Seals from JSON lines (blank lines skipped), at most ``max_streams`` stream
    entries in all (None: no cap); raises :class:`NotSeals` (:class:`TooManyStreams`)."""
    found: list[LedgerSealed] = []
    streams = 0
    for line in lines:
        if not line.strip():
            continue
        number = len(found) + 1
        try:
            kept = msgspec.json.decode(line, type=_KeptSeal)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise NotSeals(f"seal {number}: {exc}") from None
        except RecursionError:
            raise NotSeals(f"seal {number}: nested too deeply") from None
        if max_streams is not None and streams + len(kept.streams) > max_streams:
            raise TooManyStreams(
                f"the seals name more than {max_streams} streams in all;"
                " verify them a few seals at a time"
            )
        streams += len(kept.streams)
        found.append(kept.event())
    return found


async def sealer(
    pool: AsyncConnectionPool[Any], key: SealKey, interval: float, clock: Callable[[], datetime]
) -> None:
    """The server's background task: a seal every ``interval`` seconds when there is news."""
    while True:
        await asyncio.sleep(interval)
        try:
            async with pool.connection() as conn:
                seal = await seal_now(conn, key, clock())
            if seal is not None:
                log.info("sealed", seal=seal.sequence, count=seal.count)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sealing failed")


# --- verification ------------------------------------------------------------------------


class Finding(msgspec.Struct, frozen=True):
    """One thing wrong, named: ``kind`` is stable, ``message`` is for people."""

    kind: str
    message: str


async def check_triggers(conn: psycopg.AsyncConnection[Any]) -> list[Finding]:
    """The append-only triggers must exist and fire ALWAYS: an ``ENABLE TRIGGER`` after a
    ``DISABLE`` quietly makes them origin-only, skipped under replication role replica."""
    states = await store.trigger_states(conn)
    findings = []
    for name in GUARD_TRIGGERS:
        state = states.get(name)
        if state is None:
            findings.append(Finding("trigger", f"trigger {name} on events is missing"))
        elif state != "A":
            label = _TRIGGER_STATES.get(state, state)
            findings.append(
                Finding("trigger", f"trigger {name} on events is {label}, not ENABLE ALWAYS")
            )
    return findings


def _cursor(seal: LedgerSealed) -> tuple[int, int]:
    return (seal.tx, seal.position)


@dataclass(frozen=True)
class _Kept:
    """The kept seals, oldest first, with what the checks need of them worked out once:
    each seal's hash and the (stream, version) digests they recorded. A seal names up to
    10,000 streams and its hash encodes them all, so this is made off the event loop."""

    seals: Sequence[LedgerSealed]
    hashes: list[str]  # each seal's seals.seal_hash
    sealed: dict[tuple[str, int], tuple[str, int]]  # (stream, version) -> (digest, seal)

    @classmethod
    def of(cls, kept: Sequence[LedgerSealed]) -> _Kept:
        sealed: dict[tuple[str, int], tuple[str, int]] = {}
        for seal in kept:
            for sid, (version, digest) in seal.streams.items():
                sealed[(sid, version)] = (digest, seal.sequence)
        hashes = [seals.seal_hash(seal) for seal in kept]
        return cls(seals=kept, hashes=hashes, sealed=sealed)


def _check_kept(kept: _Kept) -> list[Finding]:
    findings = []
    pinned = kept.seals[0].public_key
    for i, seal in enumerate(kept.seals):
        if not seals.signature_valid(seal):
            findings.append(
                Finding("signature", f"seal #{seal.sequence}: its signature does not verify")
            )
        if seal.public_key != pinned:
            findings.append(
                Finding("key_changed", f"seal #{seal.sequence} is signed by another key")
            )
        prior = kept.seals[i - 1] if i else None
        if prior and seal.sequence == prior.sequence + 1 and seal.previous != kept.hashes[i - 1]:
            findings.append(
                Finding("seal_chain", f"seal #{seal.sequence} does not follow #{prior.sequence}")
            )
    return findings


async def _check_logged_seals(conn: psycopg.AsyncConnection[Any], kept: _Kept) -> list[Finding]:
    """The log still holds every kept seal, and its later seals extend their chain."""
    wrong: dict[int, Finding] = {}
    unseen = {seal.sequence: hash_ for seal, hash_ in zip(kept.seals, kept.hashes, strict=True)}
    chain = _Chain(kept.seals[-1], kept.hashes[-1])

    def check(page: list[LedgerSealed]) -> None:
        for logged in page:
            kept_hash = unseen.pop(logged.sequence, None)
            if kept_hash is not None and seals.seal_hash(logged) != kept_hash:
                wrong[logged.sequence] = Finding(
                    "seal_altered", f"the log's seal #{logged.sequence} differs from the kept one"
                )
            chain.extend(logged)

    # The log's seals from the first kept one on, a page at a time: however many there
    # are, only the kept ones and a page are held. Hashing a page of seals is CPU work
    # (each names up to 10,000 streams): off the event loop.
    async for page in seal_pages(conn, after=kept.seals[0].sequence - 1):
        await asyncio.to_thread(check, page)
        if chain.findings:
            break  # past the last kept seal: the rest only shows the same broken chain
    for sequence in unseen:
        wrong[sequence] = Finding("seal_missing", f"seal #{sequence} is no longer in the log")
    return [wrong[seal.sequence] for seal in kept.seals if seal.sequence in wrong] + chain.findings


class _Chain:
    """The log's seals after the last kept one must extend its chain, signed by its key;
    the first that does not is named."""

    def __init__(self, last: LedgerSealed, last_hash: str) -> None:
        self.last = last.sequence
        self.expected, self.pinned = last_hash, last.public_key
        self.findings: list[Finding] = []

    def extend(self, logged: LedgerSealed) -> None:
        if logged.sequence <= self.last or self.findings:
            return
        if logged.previous != self.expected or not seals.signature_valid(logged, self.pinned):
            self.findings.append(
                Finding(
                    "seal_chain",
                    f"the log's seal #{logged.sequence} does not extend the kept seals"
                    " (another chain, or another key)",
                )
            )
            return
        self.expected = seals.seal_hash(logged)


async def _check_roots(
    conn: psycopg.AsyncConnection[Any], kept: Sequence[LedgerSealed]
) -> list[Finding]:
    """Recompute each kept seal's Merkle root over the log as it is now; name events in a
    sealed range that no seal accounts for (when the kept seals start at the first)."""
    findings: list[Finding] = []
    complete = kept[0].sequence == 1
    tree = seals.MerkleTree()
    heads: dict[str, int] = {}
    targets = iter(kept)
    target: LedgerSealed | None = kept[0]
    heads.update({sid: v[0] for sid, v in kept[0].streams.items()})
    next(targets)
    mismatched: list[str] = []

    def settle(seal: LedgerSealed) -> None:
        if tree.count != seal.count or tree.root().hex() != seal.root:
            mismatched.append(
                f"seal #{seal.sequence} covered {seal.count} events up to (tx {seal.tx},"
                f" position {seal.position}) with Merkle root {seal.root[:16]}…; the log now"
                f" holds {tree.count} there, with root {tree.root().hex()[:16]}…"
            )

    last = _cursor(kept[-1])
    upto = store.Checkpoint(tx=last[0], position=last[1])
    # aclosing: the loop breaks (or raises) while leaves holds a transaction and a
    # named cursor open on conn; unclosed, the pooled connection goes back mid-transaction.
    async with aclosing(store.leaves(conn, store.Checkpoint(), upto)) as found:
        async for leaf in found:
            while target is not None and (leaf.tx, leaf.position) > _cursor(target):
                settle(target)
                target = next(targets, None)
                if target is not None:
                    heads.update({sid: v[0] for sid, v in target.streams.items()})
            if target is None:  # pragma: no cover - upto bounds the leaves
                break
            if complete and leaf.version > heads.get(leaf.stream_id, 0):
                findings.append(
                    Finding(
                        "inserted",
                        f"{leaf.stream_id} version {leaf.version} (position {leaf.position}) was"
                        f" inserted into the range seal #{target.sequence} covered",
                    )
                )
            tree.append(leaf.digest)
    while target is not None:
        settle(target)
        target = next(targets, None)
    if mismatched:
        more = f" (and {len(mismatched) - 1} later seals)" if len(mismatched) > 1 else ""
        findings.insert(0, Finding("root", mismatched[0] + more))
    return findings


_ROWS_AT_ONCE = SEAL_MAX_EVENTS


async def _name_stream_changes(conn: psycopg.AsyncConnection[Any], kept: _Kept) -> list[Finding]:
    """Compare what the seals recorded of each stream with what the log holds now."""
    wanted = list(kept.sealed)
    rows: list[store.StreamRow] = []
    # A seal's worth of rows at a time: reading 200,000 in one answer held the event
    # loop for a third of a second.
    for start in range(0, len(wanted), _ROWS_AT_ONCE):
        rows += await store.rows_at(conn, wanted[start : start + _ROWS_AT_ONCE])
    return await asyncio.to_thread(_stream_changes, kept.sealed, rows)


def _stream_changes(
    sealed: dict[tuple[str, int], tuple[str, int]], found: list[store.StreamRow]
) -> list[Finding]:
    """:func:`_name_stream_changes`'s CPU work: a finding for each stream whose sealed
    events the log (``found``) no longer holds as they were."""
    findings: list[Finding] = []
    named: set[str] = set()
    rows = sorted(found, key=lambda r: (r.stream_id, r.version))
    newest = {r.stream_id: r for r in rows}  # each stream's highest sealed version
    for sid, row in newest.items():
        digest, by = sealed[(sid, row.version)]
        if row.stream_versions == 0:
            named.add(sid)
            findings.append(
                Finding(
                    "stream_deleted",
                    f"stream {sid} was deleted; seal #{by} covered it up to version {row.version}",
                )
            )
        elif row.stream_versions < row.version:
            named.add(sid)
            findings.append(
                Finding(
                    "tail_cut",
                    f"stream {sid}: versions {row.stream_versions + 1}..{row.version} were"
                    f" deleted (seal #{by} covered version {row.version})",
                )
            )
    for row in rows:
        if row.stream_id in named or row.digest is None:
            continue
        digest, by = sealed[(row.stream_id, row.version)]
        if row.digest.hex() != digest:
            named.add(row.stream_id)
            hidden = row.stored_hash == row.digest
            findings.append(
                Finding(
                    "rewritten",
                    f"stream {row.stream_id} version {row.version} differs from what seal #{by}"
                    " covered"
                    + (
                        ": its hash chain was recomputed to hide the edit"
                        if hidden
                        else ": its hash chain no longer verifies either"
                    ),
                )
            )
    return findings


async def verify_against(
    conn: psycopg.AsyncConnection[Any], kept: Sequence[LedgerSealed]
) -> list[Finding]:
    """Everything wrong with the log, judged by the seals an auditor kept: the seals' own
    signatures and chain, that the log still holds them and only grew since, each sealed
    range's Merkle root, the streams the seals recorded, and the append-only triggers."""
    findings = await check_triggers(conn)
    if not kept:
        return findings
    kept = sorted(kept, key=lambda s: s.sequence)
    # Hashing and signature checks over seals of up to 10,000 streams each are CPU work:
    # off the event loop, so a large verification does not stall the server.
    worked = await asyncio.to_thread(_Kept.of, kept)
    findings += await asyncio.to_thread(_check_kept, worked)
    findings += await _check_logged_seals(conn, worked)
    findings += await _check_roots(conn, kept)
    findings += await _name_stream_changes(conn, worked)
    end = await store.log_end(conn)
    last = kept[-1]
    if end is None or (end.tx, end.position) < _cursor(last):
        where = "is empty" if end is None else f"ends at (tx {end.tx}, position {end.position})"
        findings.append(
            Finding(
                "truncated",
                f"the log was truncated: it {where}, but seal #{last.sequence} covered"
                f" {last.count} events up to (tx {last.tx}, position {last.position})",
            )
        )
    return findings
