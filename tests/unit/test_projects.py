"""Projects (tenants) as a pure decider: added once, with a safe id; disabled for good."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.errors import AlreadyExists, Rejected
from ledger.events import ProjectAdded, ProjectDisabled, ProjectSettingsChanged
from ledger.projects import AddProject, ChangeProjectSettings, DisableProject
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


@pytest.mark.parametrize("bad", ["", "a b", "../x", "a/b", "-x", "x" * 49, "é"])
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


def settings(**given: object) -> ChangeProjectSettings:
    values: dict[str, object] = {
        "server_scopes": ("mcp",),
        "server_default_scope": ("mcp",),
        "now": T0,
    }
    return ChangeProjectSettings(**(values | given))  # type: ignore[arg-type]


def changed(**given: object) -> ProjectSettingsChanged:
    values: dict[str, object] = {
        "project_id": "acme",
        "scopes": None,
        "default_scope": None,
        "access_token_ttl": None,
        "refresh_token_ttl": None,
        "changed_at": T0,
    }
    return ProjectSettingsChanged(**(values | given))  # type: ignore[arg-type]


def test_given_a_project_when_its_settings_change_then_recorded() -> None:
    result = (
        spec.given(ADDED)
        .when(settings(scopes=("read", "write"), default_scope=("read",), access_token_ttl=120))
        .then(changed(scopes=("read", "write"), default_scope=("read",), access_token_ttl=120))
    )
    assert result.state.scopes == ["read", "write"]
    assert result.state.refresh_token_ttl is None  # the server's


def test_what_is_not_named_keeps_its_value_and_reset_goes_back_to_the_server() -> None:
    before = changed(scopes=("read",), default_scope=("read",), access_token_ttl=120)
    spec.given(ADDED, before).when(settings(refresh_token_ttl=600)).then(
        changed(
            scopes=("read",), default_scope=("read",), access_token_ttl=120, refresh_token_ttl=600
        )
    )
    spec.given(ADDED, before).when(settings(clear=frozenset({"access_token_ttl"}))).then(
        changed(scopes=("read",), default_scope=("read",))
    )


def test_the_same_settings_again_record_nothing() -> None:
    before = changed(access_token_ttl=120)
    spec.given(ADDED, before).when(settings(access_token_ttl=120)).then()


@pytest.mark.parametrize(
    "bad",
    [
        {"scopes": ("read",)},  # the server's default scope (mcp) is not among them
        {"default_scope": ("admin",)},
        {"scopes": ("read", "read"), "default_scope": ("read",)},
        {"scopes": ("a b",), "default_scope": ("a b",)},
        {"scopes": (), "default_scope": ()},
        {"access_token_ttl": 0},
        {"refresh_token_ttl": 10**10},
        {"clear": frozenset({"issuer"})},
    ],
)
def test_settings_that_cannot_serve_are_refused(bad: dict[str, object]) -> None:
    spec.given(ADDED).when(settings(**bad)).then_error(Rejected)


def test_an_unknown_projects_settings_are_refused() -> None:
    spec.given().when(settings(access_token_ttl=60)).then_error(Rejected)
