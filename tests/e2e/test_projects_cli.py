"""``tokenledger --project ID``: the installed command working on one project's clients,
users and keys, and what it registered signing in on ``tokenledger serve`` under
/projects/ID, with that project's issuer and signing key (docs/tenancy.md)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.cli import run_cli, served, tokenledger_script
from tests.e2e.conftest import PASSWORD
from tests.support.authorization import authorized

pytestmark = pytest.mark.skipif(
    tokenledger_script() is None, reason="the tokenledger script is not installed"
)

REDIRECT_URI = "http://127.0.0.1:53682/callback"  # any port: a loopback registration


async def cli(database_url: str, *args: str, stdin: str | None = None) -> str:
    """Run a command that must succeed; its standard output."""
    status, out, err = await run_cli(list(args), database_url, stdin=stdin)
    assert status == 0, f"{args}: {err}"
    return out


def first_column(out: str) -> set[str]:
    return {line.split("\t", 1)[0] for line in out.splitlines() if line}


async def verified(access_token: str, metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kid and the claims of an access token, checked against the JWKS and the
    issuer the project's metadata names."""
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(metadata["jwks_uri"])).json()
    header = jwt.get_unverified_header(access_token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        access_token,
        key=key,
        algorithms=[header["alg"]],
        issuer=metadata["issuer"],
        options={"verify_aud": False, "require": ["iss", "sub", "aud", "exp", "jti"]},
    )
    return header["kid"], claims


async def test_a_project_administered_from_the_cli_and_served(empty_database_url: str) -> None:
    db = empty_database_url
    assert (await cli(db, "projects", "add", "acme")).strip() == "project acme added"
    listed = (await cli(db, "projects", "list")).splitlines()
    assert listed[0].endswith("\tserved at /")  # the root project, never recorded
    assert listed[1].startswith("acme\tacme\tactive, added ")
    assert listed[1].endswith("\tserved at /projects/acme")

    # A client and a user of acme, and a client of the root project beside them.
    out = await cli(
        db, "--project", "acme", "clients", "add", "web", "--public",
        "--redirect-uri", "http://127.0.0.1/callback", "--name", "Acme Web",
    )  # fmt: skip
    assert out.strip() == "client web registered (public)"
    await cli(db, "clients", "add", "root-web", "--public", "--redirect-uri", "http://127.0.0.1/cb")
    out = await cli(db, "--project", "acme", "users", "add", "alice", stdin=PASSWORD + "\n")
    assert out.startswith("user alice added (subject ")
    subject = out.rsplit("subject ", 1)[1].strip(" )\n")

    # Each project lists its own clients only; naming the root project is the root.
    assert first_column(await cli(db, "--project", "acme", "clients", "list")) == {"web"}
    assert first_column(await cli(db, "clients", "list")) == {"root-web"}
    assert first_column(await cli(db, "--project", "default", "clients", "list")) == {"root-web"}

    # A key rotated in acme is acme's: the root project's keys do not list it.
    out = await cli(db, "--project", "acme", "keys", "rotate", "--now")
    kid = out.split()[1]
    assert first_column(await cli(db, "--project", "acme", "keys", "list")) == {kid}
    assert kid not in await cli(db, "keys", "list")

    out = await cli(db, "--project", "acme", "clients", "publishable-key", "web")
    assert "x-stack-project-id: acme" in out.splitlines()
    publishable = out.split("x-stack-publishable-client-key: ", 1)[1].strip()

    status, out, err = await run_cli(["--project", "nosuch", "clients", "list"], db)
    assert status != 0
    assert "no such project: nosuch" in err
    assert out == ""
    # The server's own commands are no project's: --project is refused, not ignored.
    for command, named in (
        (["serve"], "serve"),
        (["audit", "seals"], "audit seals"),
        (["projects", "list"], "projects"),
    ):
        status, _, err = await run_cli(["--project", "acme", *command], db)
        assert status == 2
        assert f"--project does not apply to `{named}`" in err
    # The log's events with --project: that project's streams only.
    out = await cli(db, "--project", "acme", "audit", "events", "--ndjson")
    streams = {json.loads(line)["stream_id"] for line in out.splitlines()}
    assert streams, out
    assert all(s.startswith("acme/") for s in streams), streams

    async with served(db) as base:
        issuer = f"{base}/projects/acme"
        async with httpx.AsyncClient() as http:
            well_known = f"{base}/.well-known/oauth-authorization-server/projects/acme"
            response = await http.get(well_known)
        assert response.status_code == 200, response.text
        metadata = response.json()
        assert metadata["issuer"] == issuer
        assert metadata["token_endpoint"] == f"{issuer}/oauth/token"

        async with authorized(
            metadata["authorization_endpoint"], "web", REDIRECT_URI, "alice", PASSWORD
        ) as grant:
            tokens = await grant.exchange(metadata["token_endpoint"])
        url = grant.url
        async with httpx.AsyncClient() as browser:
            login = await browser.get(url)  # the login page names acme's client
        assert "<strong>Acme Web</strong>" in login.text
        signed_by, claims = await verified(tokens["access_token"], metadata)
        assert claims["iss"] == issuer
        assert claims["sub"] == subject
        assert claims["client_id"] == "web"
        assert signed_by == kid  # the key `--project acme keys rotate` made

        # The publishable key the CLI printed names acme's client at Stack Auth's route.
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base}/api/v1/auth/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                headers={
                    "x-stack-project-id": "acme",
                    "x-stack-publishable-client-key": publishable,
                },
            )
        assert response.status_code == 200, response.text
        _, refreshed = await verified(response.json()["access_token"], metadata)
        assert refreshed["iss"] == issuer
        assert refreshed["sub"] == subject

        # The user and client of acme are unknown at the root project's URLs.
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            root_url = url.replace(issuer + "/oauth/", base + "/oauth/")
            assert root_url != url
            page = await browser.get(root_url)
            assert page.status_code == 400
            assert "Acme Web" not in page.text
