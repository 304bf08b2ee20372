"""The auditor decider: added once, revoked once, and a revoked auditor's queries refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.auditors import AddAuditor, AuditorRefused, RecordQuery, RevokeAuditor
from ledger.errors import AlreadyExists
from ledger.events import AuditorAdded, AuditorRevoked, AuditQueryRecorded
from tests.unit.given_when_then import auditor

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ADDED = AuditorAdded(name="ann", token_hash="ab" * 32, added_at=T0)
LATER = T0 + timedelta(minutes=1)


def query() -> RecordQuery:
    return RecordQuery(method="GET", path="/audit/events", query="limit=5", now=LATER)


def test_adding_an_auditor_records_only_the_hash() -> None:
    result = auditor.given().when(AddAuditor(name="ann", token_hash="ab" * 32, now=T0))
    assert result.then(ADDED).state.active


def test_an_auditor_is_added_only_once() -> None:
    auditor.given(ADDED).when(AddAuditor(name="ann", token_hash="cd" * 32, now=T0)).then_error(
        AlreadyExists
    )


def test_a_query_is_recorded_and_counted() -> None:
    recorded = AuditQueryRecorded(
        name="ann", method="GET", path="/audit/events", query="limit=5", queried_at=LATER
    )
    result = auditor.given(ADDED).when(query()).then(recorded)
    assert result.state.queries == 1
    assert result.state.last_query_at == LATER


def test_a_revoked_auditor_is_refused_and_nothing_is_recorded() -> None:
    revoked = AuditorRevoked(name="ann", revoked_at=LATER)
    auditor.given(ADDED).when(RevokeAuditor(now=LATER)).then(revoked)
    auditor.given(ADDED, revoked).when(query()).then_error(AuditorRefused)
    auditor.given(ADDED, revoked).when(RevokeAuditor(now=LATER)).then()


def test_revoking_an_unknown_auditor_is_refused() -> None:
    auditor.given().when(RevokeAuditor(now=T0)).then_error(AuditorRefused)
