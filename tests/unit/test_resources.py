"""Resource servers (ledger/resources.py): registering and removing them, and which
target (RFC 8707 ``resource``, TaxRock's ``audience``) a client may ask for."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from ledger import authorization
from ledger.clients import ClientState
from ledger.errors import AlreadyExists, InvalidTarget, Rejected
from ledger.events import ResourceRegistered, ResourceRemoved
from ledger.families import Refresh
from ledger.resources import AddResource, RemoveResource, Targets, check_target
from tests.unit.given_when_then import family, resource
from tests.unit.test_families import ROTATING, T0, started

RS = "https://mcp.example.com/mcp"
TAXROCK = "https://delegate.api.taxrock.com"
REGISTERED = ResourceRegistered(url=RS, scopes=["mcp"], registered_at=T0)


def test_a_resource_is_registered_once() -> None:
    resource.given().when(AddResource(url=RS, scopes=["mcp", "mcp"], now=T0)).then(REGISTERED)
    resource.given(REGISTERED).when(AddResource(url=RS, scopes=[], now=T0)).then_error(
        AlreadyExists
    )


@pytest.mark.parametrize("url", ["not a uri", "/relative", "https://rs.example.com/#frag"])
def test_a_resource_is_an_absolute_uri_without_fragment(url: str) -> None:
    resource.given().when(AddResource(url=url, scopes=[], now=T0)).then_error(Rejected)


def test_removing_and_adding_again() -> None:
    later = T0 + timedelta(hours=1)
    removed = ResourceRemoved(url=RS, removed_at=later)
    result = resource.given(REGISTERED).when(RemoveResource(now=later)).then(removed)
    assert not result.state.registered
    resource.given(REGISTERED, removed).when(RemoveResource(now=later)).then_error(Rejected)
    resource.given().when(RemoveResource(now=later)).then_error(Rejected)
    again = resource.given(REGISTERED, removed).when(AddResource(url=RS, scopes=[], now=later))
    assert again.then(ResourceRegistered(url=RS, scopes=[], registered_at=later)).state.registered


STRICT = Targets(registered=frozenset({RS}))
ANY = Targets(registered=frozenset(), allow_any=True)


@pytest.mark.parametrize(
    ("target", "audience", "targets", "allowed"),
    [
        (None, None, STRICT, True),  # naming nothing is always allowed
        (RS, None, STRICT, True),  # a registered resource
        ("https://other.example.com/", None, STRICT, False),  # not registered
        ("https://other.example.com/", None, ANY, True),  # the development setting
        (TAXROCK, TAXROCK, STRICT, True),  # the client's own audience, registered or not
        (RS, TAXROCK, STRICT, False),  # the client's allow-list narrows the registered
        (RS, TAXROCK, ANY, False),  # ... even with the development setting
        ("not-absolute", None, ANY, False),
    ],
)
def test_which_target_a_client_may_ask_for(
    target: str | None, audience: str | None, targets: Targets, allowed: bool
) -> None:
    if allowed:
        check_target(target, audience, targets)
    else:
        with pytest.raises(InvalidTarget):
            check_target(target, audience, targets)


def _authorize(client: ClientState, resource: str, targets: Targets) -> None:
    params = {
        "response_type": ["code"],
        "client_id": [client.client_id],
        "redirect_uri": [client.redirect_uris[0]],
        "state": ["s"],
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGEb-ZQVvc"],
        "code_challenge_method": ["S256"],
        "resource": [resource],
    }
    authorization.validate(
        params, client, scopes_supported=["mcp"], default_scope=["mcp"], targets=targets
    )


def test_authorize_refuses_a_target_outside_the_allow_list() -> None:
    client = ClientState(
        client_id="c", redirect_uris=["https://app.example.com/cb"], scopes=["mcp"], version=1
    )
    _authorize(client, RS, STRICT)
    with pytest.raises(authorization.RedirectableError) as refused:
        _authorize(client, "https://unregistered.example.com/", STRICT)
    assert refused.value.error.error == "invalid_target"
    narrowed = ClientState(
        client_id="c",
        redirect_uris=["https://app.example.com/cb"],
        scopes=["mcp"],
        audience=TAXROCK,
        version=1,
    )
    with pytest.raises(authorization.RedirectableError) as refused:
        _authorize(narrowed, RS, STRICT)
    assert refused.value.error.error == "invalid_target"


def _refresh(resource: str | None) -> Refresh:
    return Refresh(
        presented_generation=1,
        client_id="cli",
        scope=None,
        resource=resource,
        new_refresh_hash="r2" * 32,
        new_access_jti="jti-2",
        now=T0 + timedelta(minutes=5),
        policy=ROTATING,
    )


def test_a_refresh_naming_the_familys_audience_is_accepted() -> None:
    """The TaxRock flow, in the decider: no resource at authorize (the family's audience
    is the client's), then ``audience`` on a refresh."""
    without = msgspec.structs.replace(started(), resource=None, audience=TAXROCK)
    result = family.given(without).when(_refresh(TAXROCK)).outcome
    assert result.error is None
    assert result.events[0].audience == TAXROCK  # type: ignore[union-attr]
    family.given(without).when(_refresh(RS)).then_error(InvalidTarget)


def test_a_refresh_without_resource_keeps_the_bound_resource() -> None:
    result = family.given(started()).when(_refresh(None)).outcome
    assert result.error is None
    assert result.events[0].audience == started().audience  # type: ignore[union-attr]


def test_a_resource_registered_with_scopes_serves_only_those() -> None:
    client = ClientState(
        client_id="c",
        redirect_uris=["https://app.example.com/cb"],
        scopes=["mcp", "files"],
        version=1,
    )
    scoped = Targets(registered={RS: ["files"]}, scopes={RS: ["files"]})
    params = {
        "response_type": ["code"],
        "client_id": ["c"],
        "redirect_uri": ["https://app.example.com/cb"],
        "state": ["s"],
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGEb-ZQVvc"],
        "code_challenge_method": ["S256"],
        "resource": [RS],
    }
    supported = ["mcp", "files"]
    granted = authorization.validate(
        {**params, "scope": ["files"]},
        client,
        scopes_supported=supported,
        default_scope=["mcp"],
        targets=scoped,
    )
    assert granted.scope == "files"
    with pytest.raises(authorization.RedirectableError) as refused:
        authorization.validate(
            {**params, "scope": ["mcp files"]},
            client,
            scopes_supported=supported,
            default_scope=["mcp"],
            targets=scoped,
        )
    assert refused.value.error.error == "invalid_scope"
    # Registered without scopes: any scope the client may have.
    unscoped = Targets(registered={RS: []}, scopes={RS: []})
    wide = authorization.validate(
        {**params, "scope": ["mcp files"]},
        client,
        scopes_supported=supported,
        default_scope=["mcp"],
        targets=unscoped,
    )
    assert set(wide.scope.split(" ")) == {"mcp", "files"}
