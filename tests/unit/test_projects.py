"""Projects (tenants) as a pure decider: added once, with a safe id; disabled for good."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.errors import AlreadyExists, Rejected
from ledger.events import ProjectAdded, ProjectDisabled
from ledger.projects import AddProject, DisableProject
from tests.unit import given_when_then

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADDED = ProjectAdded(project_id="acme", name="Acme", added_at=T0)
spec = given_when_then.project


def test_given_nothing_when_added_then_recorded_and_enabled() -> None:
    result = spec.given().when(AddProject(project_id="acme", name="Acme", now=T0)).then(ADDED)
    assert result.state.enabled


def test_the_name_defaults_to_the_id() -> None:
    spec.given().when(AddProject(project_id="acme", name=None, now=T0)).then(
        ProjectAdded(project_id="acme", name="acme", added_at=T0)
    )


@pytest.mark.parametrize("bad", ["", "a b", "../x", "a/b", "-x", "x" * 65, "é"])
def test_an_unsafe_id_is_refused(bad: str) -> None:
    spec.given().when(AddProject(project_id=bad, name=None, now=T0)).then_error(Rejected)


def test_given_a_project_when_added_again_then_refused() -> None:
    spec.given(ADDED).when(AddProject(project_id="acme", name=None, now=T0)).then_error(
        AlreadyExists
    )


def test_given_a_project_when_disabled_then_disabled_and_again_is_a_no_op() -> None:
    disabled = ProjectDisabled(project_id="acme", disabled_at=T0)
    result = spec.given(ADDED).when(DisableProject(now=T0)).then(disabled)
    assert not result.state.enabled
    spec.given(ADDED, disabled).when(DisableProject(now=T0)).then()


def test_given_nothing_when_disabled_then_refused() -> None:
    spec.given().when(DisableProject(now=T0)).then_error(Rejected)
