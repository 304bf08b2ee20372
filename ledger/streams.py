"""The kinds of stream in the log, each with its id prefix and its decider: defined once.

A stream id is ``<prefix><key>``: ``family:<uuid>``, ``code:<hash>``, ``client:<id>``,
``user:<user_id>``, ``key:<kid>``, ``session:<hash>``, ``auditor:<name>``, ``resource:<url>``,
``project:<id>``,
``ledger:seals``. Everything that names a stream goes through here.

Projects (tenants, docs/tenancy.md): a stream of a project other than the root one is
``<project>/<prefix><key>`` (``acme/client:web``), so the same client id in two projects
is two streams. A project id has no ``/`` or ``:``, and a prefix has no ``/``, so the
project is whatever precedes a ``/`` that comes before the first ``:``. The root project
keeps the bare ids, so logs and seals from before projects stay valid. Projects,
auditors and the seals are the server's own, in no project (``scoped=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger import (
    auditors,
    clients,
    codes,
    families,
    keys,
    projects,
    resources,
    seals,
    sessions,
    users,
)
from ledger.decider import Decider

C = TypeVar("C")
S = TypeVar("S")


@dataclass(frozen=True, eq=False)  # one per kind: compared and hashed by identity
class StreamKind(Generic[C, S]):
    prefix: str
    decider: Decider[C, S]
    scoped: bool = True  # belongs to a project; False: the server's own

    def id(self, key: str, project: str | None = None) -> str:
        """The stream's id in ``project`` (None: the root project)."""
        if project is None or not self.scoped:
            return self.prefix + key
        return f"{project}/{self.prefix}{key}"

    def key_of(self, stream_id: str) -> str:
        return split(stream_id)[1].removeprefix(self.prefix)


CLIENT = StreamKind("client:", clients.DECIDER)
USER = StreamKind("user:", users.DECIDER)
CODE = StreamKind("code:", codes.DECIDER)
FAMILY = StreamKind("family:", families.DECIDER)
SIGNING_KEY = StreamKind("key:", keys.DECIDER)
SESSION = StreamKind("session:", sessions.DECIDER)
AUDITOR = StreamKind("auditor:", auditors.DECIDER, scoped=False)
RESOURCE = StreamKind("resource:", resources.DECIDER)
PROJECT = StreamKind("project:", projects.DECIDER, scoped=False)
# One stream, 'ledger:seals': the signed heads over the whole log.
SEALS = StreamKind("ledger:", seals.DECIDER, scoped=False)

KINDS: tuple[StreamKind[Any, Any], ...] = (
    CLIENT,
    USER,
    CODE,
    FAMILY,
    SIGNING_KEY,
    SESSION,
    AUDITOR,
    RESOURCE,
    PROJECT,
    SEALS,
)


def split(stream_id: str) -> tuple[str | None, str]:
    """A stream id's project (None: the root project or none) and its id within it."""
    head, colon, _ = stream_id.partition(":")
    project, slash, _ = head.partition("/")
    if colon and slash:
        return project, stream_id[len(project) + 1 :]
    return None, stream_id


def kind_of(stream_id: str) -> StreamKind[Any, Any] | None:
    local = split(stream_id)[1]
    for kind in KINDS:
        if local.startswith(kind.prefix):
            return kind
    return None
