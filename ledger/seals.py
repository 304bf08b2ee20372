"""Seals: signed heads over the whole log, the way Certificate Transparency signs tree heads.

Per-stream hash chains cannot catch a writer who edits an event and recomputes its
stream's hashes, cuts a stream's tail, or deletes a whole stream: nothing outside a
stream anchors it. A seal does. It covers every event up to a cursor below the xid8
horizon, in the log's commit-safe order ``(tx, position)`` (the order ``read_all``
reads: every event committed later sorts after the cursor, so a sealed range is a
prefix that only ever grows). It holds:

* ``root``: the RFC 9162 §2.1 Merkle tree hash over those events, leaf i being
  ``SHA-256(0x00 || digest_i)`` where ``digest_i`` is the row's chain hash recomputed
  from its content (``events_row_digest``), node ``SHA-256(0x01 || left || right)``;
* ``count`` and the cursor ``(tx, position)`` of the last event covered;
* ``previous``: the hash of the previous seal, so seals form a chain of their own;
* ``frontier``: the roots of the perfect subtrees of that tree (at most 64), so the next
  seal extends the tree from the previous one without rereading the log;
* ``streams``: for every stream written since the previous seal, its last version and
  digest in the range: what lets ``audit verify --seal`` name a cut tail, a deleted
  stream, an inserted or a rewritten event, not only say that the root differs;
* an Ed25519 ``signature`` over all of that, and the ``public_key`` that checks it.

The signing key is one a database writer does not have (see ``app/usecases/audit_seals``),
so a seal an auditor keeps cannot be forged to match a rewritten log. Everything here is
pure: the shell passes the leaves, the time and the key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists
from ledger.events import LedgerSealed

ZERO_HASH = bytes(32)
STREAM_KEY = "seals"  # the one seal stream: 'ledger:seals'


def leaf_hash(digest: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of a leaf, domain-separated from interior nodes."""
    return hashlib.sha256(b"\x00" + digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """The right edge of an append-only Merkle tree: enough to append and to get the root.

    ``frontier`` holds the roots of the perfect subtrees the leaves so far decompose into
    (the binary digits of ``count``, largest first). Folding them from the right gives the
    RFC 9162 ``MTH`` of all leaves: MTH splits at the largest power of two below n, which
    is exactly that decomposition.
    """

    def __init__(self, count: int = 0, frontier: Iterable[bytes] = ()) -> None:
        self.count = count
        self.frontier = list(frontier)
        sizes = _subtree_sizes(count)
        if len(sizes) != len(self.frontier):
            raise ValueError(f"a frontier of {count} leaves has {len(sizes)} subtrees")
        self._sizes = sizes

    def append(self, digest: bytes) -> None:
        self.frontier.append(leaf_hash(digest))
        self._sizes.append(1)
        self.count += 1
        while len(self._sizes) > 1 and self._sizes[-1] == self._sizes[-2]:
            right, left = self.frontier.pop(), self.frontier.pop()
            size = self._sizes.pop() + self._sizes.pop()
            self.frontier.append(node_hash(left, right))
            self._sizes.append(size)

    def root(self) -> bytes:
        """MTH of the leaves; of no leaves, SHA-256 of the empty string (RFC 9162 §2.1.1)."""
        if not self.frontier:
            return hashlib.sha256(b"").digest()
        root = self.frontier[-1]
        for subtree in reversed(self.frontier[:-1]):
            root = node_hash(subtree, root)
        return root


def _subtree_sizes(count: int) -> list[int]:
    return [1 << bit for bit in range(count.bit_length() - 1, -1, -1) if count >> bit & 1]


def merkle_root(digests: Iterable[bytes]) -> bytes:
    tree = MerkleTree()
    for digest in digests:
        tree.append(digest)
    return tree.root()


# --- the seal and its signature ------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64(raw)


def signing_input(seal: LedgerSealed) -> bytes:
    """The bytes signed: every field but the signature, as canonical JSON."""
    body: dict[str, Any] = msgspec.to_builtins(seal)
    body.pop("signature", None)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal_hash(seal: LedgerSealed) -> str:
    """What the next seal's ``previous`` names: SHA-256 over the signed bytes and signature."""
    return hashlib.sha256(signing_input(seal) + b"." + seal.signature.encode()).hexdigest()


def signature_valid(seal: LedgerSealed, public_key: str | None = None) -> bool:
    """Whether the seal's signature checks with ``public_key`` (default: the one it names)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_unb64(public_key or seal.public_key))
        key.verify(_unb64(seal.signature), signing_input(seal))
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(unsigned: LedgerSealed, key: Ed25519PrivateKey) -> LedgerSealed:
    return msgspec.structs.replace(unsigned, signature=_b64(key.sign(signing_input(unsigned))))


# --- the seal stream's decider ---------------------------------------------------------


class SealState(msgspec.Struct, kw_only=True, frozen=True):
    """The newest seal: where the next one continues from."""

    version: int = 0
    hash: str = ZERO_HASH.hex()
    tx: int = 0
    position: int = 0
    count: int = 0
    frontier: tuple[str, ...] = ()
    public_key: str = ""

    def tree(self) -> MerkleTree:
        return MerkleTree(self.count, (bytes.fromhex(h) for h in self.frontier))


INITIAL = SealState()


def evolve(state: SealState, event: LedgerSealed) -> SealState:
    match event:
        case LedgerSealed():
            return SealState(
                version=state.version + 1,
                hash=seal_hash(event),
                tx=event.tx,
                position=event.position,
                count=event.count,
                frontier=tuple(event.frontier),
                public_key=event.public_key,
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class RecordSeal:
    seal: LedgerSealed


SealCommand = RecordSeal


def decide(command: SealCommand, state: SealState) -> Decision:
    match command:
        case RecordSeal(seal=seal):
            # A seal extends exactly the newest one; a sealer that lost a race refuses.
            if seal.sequence != state.version + 1 or seal.previous != state.hash:
                return refuse(AlreadyExists(f"seal {seal.sequence} does not follow the newest"))
            if (seal.tx, seal.position) <= (state.tx, state.position):
                return refuse(AlreadyExists("a seal must cover more than the previous one"))
            return accept(seal)
        case _:
            assert_never(command)


DECIDER: Decider[SealCommand, SealState] = Decider(INITIAL, decide, evolve)


def new_seal(
    state: SealState,
    tree: MerkleTree,
    *,
    tx: int,
    position: int,
    streams: dict[str, tuple[int, str]],
    key: Ed25519PrivateKey,
    now: datetime,
) -> LedgerSealed:
    """The signed seal that follows ``state``, over ``tree`` up to ``(tx, position)``."""
    unsigned = LedgerSealed(
        sequence=state.version + 1,
        tx=tx,
        position=position,
        count=tree.count,
        root=tree.root().hex(),
        previous=state.hash,
        frontier=[h.hex() for h in tree.frontier],
        streams={sid: [version, digest] for sid, (version, digest) in sorted(streams.items())},
        public_key=public_key_text(key),
        sealed_at=now,
        signature="",
    )
    return sign(unsigned, key)
