"""Which project an auditor's request reads (app/http/audit.scope_of): an auditor limited
to a project reads only it, whatever they ask; any other reads what they ask, or every
project; the root project answers to its own id."""

from __future__ import annotations

import pytest

from app.http.audit import AuditError, Scope, scope_of

ROOT = "default"
EVERY = Scope(project=None, prefix=None)


def test_an_unlimited_auditor_asking_nothing_reads_every_project() -> None:
    assert scope_of(None, [], ROOT) == EVERY


def test_an_unlimited_auditor_reads_the_project_asked() -> None:
    assert scope_of(None, ["acme"], ROOT) == Scope(project="acme", prefix="acme/")


def test_the_root_projects_own_id_reads_only_its_streams() -> None:
    assert scope_of(None, [ROOT], ROOT) == Scope(project=None, prefix="")


def test_a_limited_auditor_reads_their_project_asked_or_not() -> None:
    assert scope_of("acme", [], ROOT) == Scope(project="acme", prefix="acme/")
    assert scope_of("acme", ["acme"], ROOT) == Scope(project="acme", prefix="acme/")


@pytest.mark.parametrize("asked", [["globex"], [ROOT]])
def test_a_limited_auditor_asking_for_another_project_is_forbidden(asked: list[str]) -> None:
    with pytest.raises(AuditError) as refused:
        scope_of("acme", asked, ROOT)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("asked", "status"),
    [(["acme", "acme"], 400), (["acme", "globex"], 400), (["../etc"], 404), (["Bad Id"], 404)],
)
def test_a_project_asked_twice_or_not_a_possible_id_is_refused(
    asked: list[str], status: int
) -> None:
    with pytest.raises(AuditError) as refused:
        scope_of(None, asked, ROOT)
    assert refused.value.status == status
