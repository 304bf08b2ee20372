"""Cross-stream reactions: an event on one stream that commands another.

Explicit inputs and outputs (Emmett's workflows): the command handler passes every
decision's events here and runs the follow-ups in the same transaction, so a reaction
commits with the event that caused it or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ledger import streams
from ledger.events import AnyEvent, AuthorizationCodeReplayed
from ledger.families import RevokeFamily
from ledger.streams import StreamKind


@dataclass(frozen=True)
class FollowUp:
    kind: StreamKind[Any, Any]
    key: str
    command: Any


def reactions(events: Iterable[AnyEvent]) -> Iterator[FollowUp]:
    for event in events:
        match event:
            case AuthorizationCodeReplayed():
                # RFC 6749 §4.1.2: a code used twice revokes the tokens its first use issued.
                yield FollowUp(
                    streams.FAMILY,
                    event.family_id,
                    RevokeFamily(reason="authorization_code_replay", now=event.replayed_at),
                )
            case _:
                pass
