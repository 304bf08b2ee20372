"""The kinds of stream in the log, each with its id prefix and its decider: defined once.

A stream id is ``<prefix><key>``: ``family:<uuid>``, ``code:<hash>``, ``client:<id>``,
``user:<username>``, ``key:<kid>``, ``session:<hash>``, ``auditor:<name>``, ``resource:<url>``,
``ledger:seals``. Everything that names a stream goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger import auditors, clients, codes, families, keys, resources, seals, sessions, users
from ledger.decider import Decider

C = TypeVar("C")
S = TypeVar("S")


@dataclass(frozen=True, eq=False)  # one per kind: compared and hashed by identity
class StreamKind(Generic[C, S]):
    prefix: str
    decider: Decider[C, S]

    def id(self, key: str) -> str:
        return self.prefix + key

    def key_of(self, stream_id: str) -> str:
        return stream_id.removeprefix(self.prefix)


CLIENT = StreamKind("client:", clients.DECIDER)
USER = StreamKind("user:", users.DECIDER)
CODE = StreamKind("code:", codes.DECIDER)
FAMILY = StreamKind("family:", families.DECIDER)
SIGNING_KEY = StreamKind("key:", keys.DECIDER)
SESSION = StreamKind("session:", sessions.DECIDER)
AUDITOR = StreamKind("auditor:", auditors.DECIDER)
RESOURCE = StreamKind("resource:", resources.DECIDER)
# One stream, 'ledger:seals': the signed heads over the whole log.
SEALS = StreamKind("ledger:", seals.DECIDER)

KINDS: tuple[StreamKind[Any, Any], ...] = (
    CLIENT,
    USER,
    CODE,
    FAMILY,
    SIGNING_KEY,
    SESSION,
    AUDITOR,
    RESOURCE,
    SEALS,
)


def kind_of(stream_id: str) -> StreamKind[Any, Any] | None:
    for kind in KINDS:
        if stream_id.startswith(kind.prefix):
            return kind
    return None
