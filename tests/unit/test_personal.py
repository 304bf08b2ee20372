"""Personal fields sealed per user (ledger/personal.py), the upcasters that bring rows
written before encryption to the sealed shape, and the user decider's erasure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger import personal
from ledger.events import SessionStarted, UserErased, UserRegistered, decode_event
from ledger.users import EraseUser, RegisterUser, verify_password
from tests.unit.given_when_then import user

T0 = datetime(2026, 12, 1, tzinfo=UTC)
KEY = bytes(range(32))


def test_a_sealed_field_opens_only_with_its_key_user_and_field() -> None:
    sealed = personal.seal_field(KEY, "u1", "username", "alice")
    assert personal.is_sealed(sealed)
    assert "alice" not in sealed
    assert personal.open_field(KEY, "u1", "username", sealed) == "alice"
    # Random nonces: the same name sealed twice does not compare equal.
    assert personal.seal_field(KEY, "u1", "username", "alice") != sealed
    with pytest.raises(personal.Unreadable):
        personal.open_field(None, "u1", "username", sealed)  # the key was erased
    with pytest.raises(personal.Unreadable):
        personal.open_field(bytes(32), "u1", "username", sealed)  # another key
    with pytest.raises(personal.Unreadable):
        personal.open_field(KEY, "u2", "username", sealed)  # moved to another user
    with pytest.raises(personal.Unreadable):
        personal.open_field(KEY, "u1", "password_hash", sealed)  # moved to another field


def test_a_tampered_ciphertext_does_not_open() -> None:
    sealed = personal.seal_field(KEY, "u1", "username", "alice")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(personal.Unreadable):
        personal.open_field(KEY, "u1", "username", flipped)


def test_a_plain_marked_value_opens_without_a_key() -> None:
    assert personal.open_field(None, "u1", "username", personal.plain_field("bob")) == "bob"
    with pytest.raises(ValueError, match="not a personal field"):
        personal.open_field(KEY, "u1", "username", "bob")  # neither marked nor sealed


def test_the_lookup_hash_is_keyed() -> None:
    a = personal.lookup_hash(KEY, "alice")
    assert a == personal.lookup_hash(KEY, "alice")
    assert a != personal.lookup_hash(bytes(32), "alice")
    assert "alice" not in a


def test_a_v1_user_registered_row_upcasts_to_marked_plain_values() -> None:
    v1 = {
        "user_id": "u1",
        "username": "alice",
        "password_hash": "$argon2id$v=19$x",
        "registered_at": "2026-01-01T00:00:00Z",
    }
    event = decode_event("user_registered", v1, 1)
    assert isinstance(event, UserRegistered)
    assert event.username == "plain:alice"
    assert personal.open_field(None, "u1", "password_hash", event.password_hash) == (
        "$argon2id$v=19$x"
    )
    # The data of a current row is read as it is.
    current = decode_event("user_registered", v1 | {"username": "aes256gcm:x"}, 2)
    assert isinstance(current, UserRegistered)
    assert current.username == "aes256gcm:x"


def test_a_v1_session_started_row_upcasts_without_the_username() -> None:
    v1 = {
        "session_hash": "ab" * 32,
        "user_id": "u1",
        "username": "alice",
        "started_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T08:00:00Z",
    }
    event = decode_event("session_started", v1, 1)
    assert isinstance(event, SessionStarted)
    assert "alice" not in repr(event)


REGISTERED = UserRegistered(
    user_id="u1", username="aes256gcm:n", password_hash="aes256gcm:p", registered_at=T0
)


def test_erasing_a_user_records_it_and_forgets_their_sealed_fields() -> None:
    result = (
        user.given(REGISTERED).when(EraseUser(now=T0)).then(UserErased(user_id="u1", erased_at=T0))
    )
    state = result.state
    assert state.erased
    assert state.user_id == "u1"
    assert (state.username, state.password_hash) == ("", "")


def test_erasure_is_idempotent_and_needs_a_user() -> None:
    erased = UserErased(user_id="u1", erased_at=T0)
    user.given(REGISTERED, erased).when(EraseUser(now=T0)).then()
    user.given().when(EraseUser(now=T0)).then()


def test_an_erased_user_cannot_be_registered_again_on_its_stream() -> None:
    erased = UserErased(user_id="u1", erased_at=T0)
    command = RegisterUser(user_id="u1", username="x", password_hash="y", now=T0)
    assert user.given(REGISTERED, erased).when(command).outcome.error is not None


def test_no_password_hash_never_verifies() -> None:
    assert not verify_password(None, "tokenledger: no such user")
