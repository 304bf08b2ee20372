"""API keys of a client as pure rules: the events that require, add and revoke them, and
the ``x-api-key`` check the token endpoint makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.clients import (
    AddApiKey,
    IssuePublishableKey,
    RevokeApiKey,
    SetApiKeyRequirement,
    UpdateClient,
    check_api_key,
    check_publishable_key,
)
from ledger.errors import AlreadyExists, InvalidClient, Rejected
from ledger.events import (
    ClientApiKeyAdded,
    ClientApiKeyRequirementSet,
    ClientApiKeyRevoked,
    ClientPublishableKeyIssued,
    ClientRegistered,
    ClientUpdated,
)
from ledger.opaque_tokens import hash_secret
from tests.unit import given_when_then

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "tlk_" + "k" * 43
OTHER = "tlk_" + "o" * 43

REGISTERED = ClientRegistered(
    client_id="app",
    name="app",
    client_type="public",
    redirect_uris=["urn:ietf:wg:oauth:2.0:oob:auto"],
    scopes=["mcp"],
    registered_at=T0,
)
ADDED = ClientApiKeyAdded(client_id="app", key_id="k1", key_hash=hash_secret(KEY), added_at=T0)
REQUIRED = ClientApiKeyRequirementSet(client_id="app", required=True, set_at=T0)
spec = given_when_then.client


def test_given_a_client_when_a_key_is_required_then_the_requirement_is_recorded() -> None:
    spec.given(REGISTERED).when(SetApiKeyRequirement(required=True, now=T0)).then(REQUIRED)


def test_given_a_key_already_required_when_required_again_then_nothing_is_appended() -> None:
    spec.given(REGISTERED, REQUIRED).when(SetApiKeyRequirement(required=True, now=T0)).then()


def test_given_a_client_when_updated_to_require_a_key_only_then_only_that_is_recorded() -> None:
    spec.given(REGISTERED).when(UpdateClient(require_api_key=True, now=T0)).then(REQUIRED)
    spec.given(REGISTERED, REQUIRED).when(UpdateClient(require_api_key=True, now=T0)).then()
    off = ClientApiKeyRequirementSet(client_id="app", required=False, set_at=T0)
    spec.given(REGISTERED, REQUIRED).when(UpdateClient(require_api_key=False, now=T0)).then(off)


def test_given_a_client_when_updated_with_settings_and_a_key_then_both_in_one_decision() -> None:
    renamed = ClientUpdated(
        client_id="app",
        name="Dressipi",
        redirect_uris=["urn:ietf:wg:oauth:2.0:oob:auto"],
        scopes=["mcp"],
        rotate_refresh_tokens=True,
        refresh_grace_seconds=0,
        access_token_ttl=None,
        refresh_token_ttl=None,
        refresh_idle_ttl=None,
        audiences=[],
        updated_at=T0,
    )
    command = UpdateClient(name="Dressipi", require_api_key=True, now=T0)
    spec.given(REGISTERED).when(command).then(renamed, REQUIRED)
    # A refused update records neither: the requirement does not go in alone.
    bad = UpdateClient(redirect_uris=[], require_api_key=True, now=T0)
    spec.given(REGISTERED).when(bad).then_error(Rejected)


def test_given_no_client_when_anything_about_keys_then_refused() -> None:
    for command in (
        SetApiKeyRequirement(required=True, now=T0),
        UpdateClient(require_api_key=True, now=T0),
        AddApiKey(key_id="k1", key_hash=hash_secret(KEY), now=T0),
        RevokeApiKey(key_id="k1", now=T0),
    ):
        spec.given().when(command).then_error(Rejected)


def test_given_a_client_when_a_key_is_added_then_only_its_hash_is_recorded() -> None:
    result = (
        spec.given(REGISTERED)
        .when(AddApiKey(key_id="k1", key_hash=hash_secret(KEY), now=T0))
        .then(ADDED)
    )
    assert result.state.api_key_ids == ["k1"]
    assert KEY not in repr(result.outcome.events)


def test_given_a_key_when_the_same_id_is_added_again_then_refused() -> None:
    spec.given(REGISTERED, ADDED).when(
        AddApiKey(key_id="k1", key_hash=hash_secret(OTHER), now=T0)
    ).then_error(AlreadyExists)


def test_given_two_keys_when_one_is_revoked_then_the_other_stays() -> None:
    second = ClientApiKeyAdded(
        client_id="app", key_id="k2", key_hash=hash_secret(OTHER), added_at=T0
    )
    result = (
        spec.given(REGISTERED, ADDED, second)
        .when(RevokeApiKey(key_id="k1", now=T0))
        .then(ClientApiKeyRevoked(client_id="app", key_id="k1", revoked_at=T0))
    )
    assert result.state.api_key_ids == ["k2"]
    assert result.state.api_key_hashes == [hash_secret(OTHER)]


def test_given_a_revoked_key_when_revoked_again_then_refused() -> None:
    revoked = ClientApiKeyRevoked(client_id="app", key_id="k1", revoked_at=T0)
    spec.given(REGISTERED, ADDED, revoked).when(RevokeApiKey(key_id="k1", now=T0)).then_error(
        Rejected
    )


# --- the x-api-key check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "presented", "ok"),
    [
        ((), None, True),  # no key required, none sent: today's behaviour
        ((ADDED,), None, True),  # keys exist but are not required
        ((ADDED,), KEY, True),
        ((ADDED, REQUIRED), KEY, True),
        ((REQUIRED,), None, False),  # required, none sent
        ((ADDED, REQUIRED), None, False),
        ((ADDED, REQUIRED), OTHER, False),  # required, a wrong one sent
        ((ADDED,), OTHER, False),  # a wrong key is refused even when none is required
        ((), KEY, False),  # a key sent to a client that has none
        ((ADDED,), "", False),
        (
            (ADDED, REQUIRED, ClientApiKeyRevoked(client_id="app", key_id="k1", revoked_at=T0)),
            KEY,
            False,
        ),
    ],
)
def test_api_key_check(history: tuple[object, ...], presented: str | None, ok: bool) -> None:
    client = spec.given(REGISTERED, *history).state  # type: ignore[arg-type]
    if ok:
        check_api_key(client, presented)
    else:
        with pytest.raises(InvalidClient):
            check_api_key(client, presented)


# --- publishable client keys (Stack Auth) -----------------------------------------------


def test_given_a_client_when_a_publishable_key_is_issued_then_it_is_bound_to_the_project() -> None:
    issued = ClientPublishableKeyIssued(
        client_id="app", project_id="default", key_hash=hash_secret(KEY), issued_at=T0
    )
    result = (
        spec.given(REGISTERED)
        .when(IssuePublishableKey(project_id="default", key_hash=hash_secret(KEY), now=T0))
        .then(issued)
    )
    assert check_publishable_key(result.state, "default") is result.state
    for found, project in ((result.state, "other"), (None, "default")):
        with pytest.raises(InvalidClient):
            check_publishable_key(found, project)
    spec.given().when(
        IssuePublishableKey(project_id="default", key_hash=hash_secret(KEY), now=T0)
    ).then_error(Rejected)
