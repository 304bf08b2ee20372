"""What a decider answers: the events to record, and the error to answer with after."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import OAuthError
from ledger.events import AnyEvent


@dataclass(frozen=True)
class Outcome:
    """Events to append, and the error to answer with once they are committed.

    A refusal can carry events: a replayed code or a reused refresh token is recorded
    (and its family revoked) even though the request itself fails.
    """

    events: tuple[AnyEvent, ...] = ()
    error: OAuthError | None = None
    replayed_family_id: str | None = None  # a replayed code's family, to revoke
