"""What the grants share: the token request and response, the server's defaults they
depend on (and nothing else of the shell), policy, and minting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection, AsyncCursor

from app.usecases.keys import KeyRing
from app.usecases.resources import targets
from ledger.access_tokens import mint
from ledger.clients import ClientState
from ledger.errors import InvalidTarget
from ledger.families import Policy
from ledger.keys import SigningKey
from ledger.resources import check_target
from projections.read_models import CLIENTS, send_load

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Issuance:
    """The narrow dependencies of the grants: who issues, with what defaults and key,
    at what time."""

    issuer: str
    default_audience: str
    access_token_ttl: int
    refresh_token_ttl: int
    keys: KeyRing  # the key that signs depends on the time (key rotation)
    clock: Clock
    refresh_token_key: bytes  # derives each refresh token's successor
    allow_any_resource: bool = False  # TOKENLEDGER_ALLOW_ANY_RESOURCE (development)

    @property
    def signing_key(self) -> SigningKey:
        """The key signing now."""
        return self.keys.signing_key(self.clock())


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Every parameter any grant reads (RFC 6749 §4.1.3, §6; RFC 7636 §4.5; RFC 8707).

    Unknown parameters are ignored (RFC 6749 §3.2).
    """

    grant_type: str | None = None
    code: str | None = None
    code_verifier: str | None = None
    redirect_uri: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    resource: str | None = None
    audience: str | None = None  # TaxRock's name for the resource on a refresh

    @property
    def target(self) -> str | None:
        """The resource the client asks tokens for (RFC 8707), by either name."""
        return self.resource or self.audience


class TokenResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str | None = None
    scope: str


class Caller:
    """The client making a token request, as the grant's transaction learns it: either
    already found and authenticated, or read in that transaction's first round trip
    beside the grant's own first read (its code or family) and authenticated before
    anything is decided or answered, so that a rotation is two round trips."""

    def __init__(
        self,
        client_id: str,
        *,
        known: ClientState | None = None,
        authenticate: Callable[[ClientState | None], ClientState] | None = None,
    ) -> None:
        if (known is None) == (authenticate is None):
            raise ValueError("a caller is known or authenticated from its row, not both")
        self.client_id = client_id
        self._known = known
        self._authenticate = authenticate
        self._lookup: AsyncCursor[ClientState] | None = None

    @classmethod
    def found(cls, client: ClientState) -> Caller:
        return cls(client.client_id, known=client)

    async def send(self, conn: AsyncConnection[Any]) -> None:
        """Queue the client's lookup (in a pipeline: read by ``client``)."""
        if self._known is None and self._lookup is None:
            self._lookup = await send_load(conn, CLIENTS, self.client_id)

    async def client(self) -> ClientState:
        """The client, authenticated: ``invalid_client`` (raised) otherwise."""
        if self._known is None:
            if self._lookup is None or self._authenticate is None:
                raise RuntimeError("the caller's lookup was not sent")
            self._known = self._authenticate(await self._lookup.fetchone())
        return self._known


# A grant runs on the connection the token endpoint took for the request.
Grant = Callable[
    [Issuance, AsyncConnection[Any], TokenRequest, Caller, dict[str, Any]],
    Awaitable[TokenResponse],
]


async def requested_target(
    issuance: Issuance, conn: AsyncConnection[Any], req: TokenRequest, client: ClientState
) -> str | None:
    """The resource a token request names (RFC 8707 §2), judged against what the client
    may ask for; None when it names none, or names the client's own fixed audience, which
    is what a grant without a resource gets anyway (the TaxRock client sends
    ``audience`` on a refresh after naming nothing at authorize)."""
    if req.resource is not None and req.audience is not None and req.resource != req.audience:
        raise InvalidTarget("resource and audience name different targets")
    target = req.target
    check_target(
        target,
        client.allowed_audiences,
        await targets(conn, target, allow_any=issuance.allow_any_resource),
    )
    return None if target == client.audience else target


def policy_for(issuance: Issuance, client: ClientState) -> Policy:
    return Policy(
        rotate=client.rotate_refresh_tokens,
        grace_seconds=client.refresh_grace_seconds,
        access_ttl=client.access_token_ttl or issuance.access_token_ttl,
        refresh_ttl=client.refresh_token_ttl or issuance.refresh_token_ttl,
        idle_ttl=client.refresh_idle_ttl,
    )


def token_response(
    issuance: Issuance,
    *,
    subject: str,
    audience: str,
    client_id: str,
    scope: str,
    jti: str,
    now: datetime,
    expires_at: datetime,
    refresh_token: str | None,
    family_id: str,
) -> TokenResponse:
    access_token = mint(
        issuance.keys.signing_key(now),
        issuer=issuance.issuer,
        subject=subject,
        audience=audience,
        client_id=client_id,
        scope=scope,
        jti=jti,
        issued_at=now,
        expires_at=expires_at,
        family_id=family_id,
    )
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        expires_in=int((expires_at - now).total_seconds()),
        refresh_token=refresh_token,
        scope=scope,
    )
