"""Seals, without a database: the Merkle tree is RFC 9162's, and a seal's signature and
chain catch any change to the seal itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.usecases.audit_seals import NotSeals, TooManyStreams, parse_seals
from ledger import seals
from ledger.errors import AlreadyExists
from ledger.events import LedgerSealed

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def mth(digests: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, as written: split at the largest power of two below n."""
    if not digests:
        return hashlib.sha256(b"").digest()
    if len(digests) == 1:
        return hashlib.sha256(b"\x00" + digests[0]).digest()
    k = 1 << ((len(digests) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(digests[:k]) + mth(digests[k:])).digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100])
def test_the_tree_is_rfc_9162s(n: int) -> None:
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    assert seals.merkle_root(digests) == mth(digests)


def test_a_tree_continues_from_its_frontier() -> None:
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(23)]
    first = seals.MerkleTree()
    for d in digests[:13]:
        first.append(d)
    resumed = seals.MerkleTree(first.count, first.frontier)
    for d in digests[13:]:
        resumed.append(d)
    assert resumed.root() == mth(digests)


def _seal(key: Ed25519PrivateKey, state: seals.SealState = seals.INITIAL) -> LedgerSealed:
    tree = seals.MerkleTree()
    tree.append(b"\x01" * 32)
    return seals.new_seal(
        state, tree, tx=10, position=1, streams={"client:a": (1, "ab")}, key=key, now=NOW
    )


def test_a_seal_signature_covers_every_field() -> None:
    key = Ed25519PrivateKey.generate()
    seal = _seal(key)
    assert seals.signature_valid(seal)
    for change in ({"count": 2}, {"root": "00" * 32}, {"streams": {}}, {"position": 2}):
        assert not seals.signature_valid(msgspec.structs.replace(seal, **change))
    other = Ed25519PrivateKey.generate()
    assert not seals.signature_valid(seal, seals.public_key_text(other))


def test_a_seal_survives_its_json_round_trip() -> None:
    seal = _seal(Ed25519PrivateKey.generate())
    again = msgspec.json.decode(msgspec.json.encode(seal), type=LedgerSealed)
    assert seals.signature_valid(again)
    assert seals.seal_hash(again) == seals.seal_hash(seal)


def test_seals_chain_and_a_stale_sealer_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    first = _seal(key)
    state = seals.DECIDER.fold(seals.INITIAL, [first])
    assert state.version == 1
    assert state.hash == seals.seal_hash(first)
    decision = seals.decide(seals.RecordSeal(seal=_seal(key)), state)
    assert isinstance(decision.error, AlreadyExists)


def test_kept_seals_read_back_as_the_seals_they_were() -> None:
    seal = _seal(Ed25519PrivateKey.generate())
    line = msgspec.json.encode(seal)
    (again,) = parse_seals([line, b"  "])
    assert type(again) is LedgerSealed
    assert again == seal
    assert seals.signature_valid(again)


@pytest.mark.parametrize(
    "change",
    [
        {"type": "client_registered"},
        {"sequence": 0},
        {"streams": {"client:a": [1, "ab", 3]}},
        {"streams": {"": [1, "ab"]}},
        {"sealed_at": "yesterday"},
    ],
)
def test_kept_seals_not_as_the_log_makes_them_are_refused(change: dict[str, object]) -> None:
    body = msgspec.to_builtins(_seal(Ed25519PrivateKey.generate())) | change
    with pytest.raises(NotSeals, match="seal 1: "):
        parse_seals([msgspec.json.encode(body)])


def test_kept_seals_naming_too_many_streams_are_refused() -> None:
    line = msgspec.json.encode(_seal(Ed25519PrivateKey.generate()))
    assert len(parse_seals([line, line], max_streams=2)) == 2
    with pytest.raises(TooManyStreams):
        parse_seals([line, line, line], max_streams=2)
