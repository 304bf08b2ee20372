"""Resource servers: the URLs access tokens may be for (RFC 8707), and which target a
client may ask for.

MCP clients name the MCP server they connect to as ``resource`` on the authorization
request, the code exchange and every refresh (the MCP authorization spec, RFC 8707 §2);
the token's ``aud`` is that resource. A resource must be registered (``resource:<url>``
streams, ``tokenledger resources add``) unless a development setting allows any, and a
client registered with an audience may ask only for that audience.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import assert_never

import msgspec

from ledger.decider import Decider, Decision, accept, refuse
from ledger.errors import AlreadyExists, InvalidScope, InvalidTarget, Rejected
from ledger.events import ResourceRegistered, ResourceRemoved
from ledger.protocol import validate_resource

MAX_URL = 2000


class ResourceState(msgspec.Struct, kw_only=True):
    """The ``resources`` read model; version 0: never registered."""

    url: str = ""
    scopes: list[str] = msgspec.field(default_factory=list)
    registered_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    removed_at: datetime | None = None
    version: int = 0

    @property
    def registered(self) -> bool:
        return self.version > 0 and self.removed_at is None


INITIAL = ResourceState()

ResourceEvent = ResourceRegistered | ResourceRemoved


def evolve(state: ResourceState, event: ResourceEvent) -> ResourceState:
    match event:
        case ResourceRegistered():
            return ResourceState(
                url=event.url,
                scopes=list(event.scopes),
                registered_at=event.registered_at,
                version=state.version + 1,
            )
        case ResourceRemoved():
            return msgspec.structs.replace(
                state, removed_at=event.removed_at, version=state.version + 1
            )
        case _:
            assert_never(event)


@dataclass(frozen=True, kw_only=True)
class AddResource:
    url: str
    scopes: list[str]
    now: datetime


@dataclass(frozen=True, kw_only=True)
class RemoveResource:
    now: datetime


ResourceCommand = AddResource | RemoveResource


def decide(command: ResourceCommand, state: ResourceState) -> Decision:
    match command:
        case AddResource():
            if state.registered:
                return refuse(AlreadyExists(f"resource {command.url!r} is already registered"))
            try:
                validate_resource(command.url)
            except InvalidTarget:
                return refuse(Rejected("a resource is an absolute URI without a fragment"))
            if len(command.url) > MAX_URL or not command.url.isprintable():
                return refuse(Rejected(f"a resource is at most {MAX_URL} printable characters"))
            return accept(
                ResourceRegistered(
                    url=command.url,
                    scopes=list(dict.fromkeys(command.scopes)),
                    registered_at=command.now,
                )
            )
        case RemoveResource():
            if not state.registered:
                return refuse(Rejected("no such resource"))
            return accept(ResourceRemoved(url=state.url, removed_at=command.now))
        case _:
            assert_never(command)


DECIDER: Decider[ResourceCommand, ResourceState] = Decider(INITIAL, decide, evolve)


@dataclass(frozen=True, kw_only=True)
class Targets:
    """What the server knows when it judges a requested target: the registered
    resources, and whether the development setting lets any absolute URI through."""

    registered: Collection[str]
    allow_any: bool = False
    scopes: Mapping[str, Sequence[str]] = field(default_factory=dict)  # by resource, if any


def check_target(target: str | None, client_audience: str | None, targets: Targets) -> None:
    """RFC 8707 §2 ``invalid_target``: a ``resource`` (or TaxRock's ``audience``) the
    client may not have tokens for.

    A client registered with an audience may ask only for it (its allow-list narrows the
    registered resources); any other client may ask for a registered resource, or for
    anything when ``allow_any`` is set. Asking for nothing is always allowed.
    """
    if target is None:
        return
    validate_resource(target)
    if client_audience is not None:
        if target != client_audience:
            raise InvalidTarget("resource is not allowed for this client")
        return
    if not targets.allow_any and target not in targets.registered:
        raise InvalidTarget("resource is not a registered resource server")


def check_resource_scope(scope: str, target: str | None, targets: Targets) -> None:
    """A resource registered with scopes (``resources add URL --scope S``) serves only
    those: asking for another one there is ``invalid_scope`` (RFC 6749 §3.3). A resource
    registered without scopes takes any the client may have."""
    served = targets.scopes.get(target) if target is not None else None
    if served:
        extra = [s for s in scope.split(" ") if s not in served]
        if extra:
            raise InvalidScope(f"scope not served by this resource: {' '.join(extra)}")
