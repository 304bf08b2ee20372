"""A2 and A14 with the redirect URIs real MCP clients use (issue 9): VS Code, Claude Code,
Cursor and claude.ai each get their code by a 302 to the URI they sent; the schemes of
A14 cannot be registered through the use case the CLI calls."""

from __future__ import annotations

import pytest

from app.usecases import registration
from tests.conftest import Pool
from tests.http.authorize_helpers import Http, register
from tests.http.conftest import Clock, Registered, authorize

REAL_CLIENTS = [
    pytest.param("http://127.0.0.1/", "http://127.0.0.1:33418/", id="vscode"),
    pytest.param("http://127.0.0.1:33418/", "http://127.0.0.1:33418/", id="vscode-port"),
    pytest.param(
        "http://localhost:50123/callback", "http://localhost:50123/callback", id="claude-code"
    ),
    pytest.param(
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        id="cursor",
    ),
    pytest.param(
        "https://claude.ai/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback",
        id="claude.ai",
    ),
]


@pytest.mark.parametrize(("registered", "requested"), REAL_CLIENTS)
async def test_given_a_real_mcp_client_when_the_user_allows_then_a_302_carries_the_code(
    client: Http, pool: Pool, clock: Clock, user: str, registered: str, requested: str
) -> None:
    client_id = await register(pool, clock, [registered])
    # authorize() asserts the 302 (never 307), the state and the iss parameter.
    code, _, _ = await authorize(client, Registered(client_id, requested), user)
    assert code


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(document.domain)//",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "http://app.example.com/cb",
        "https://app.example.com/cb#frag",
        "https://user@app.example.com/cb",
    ],
)
async def test_given_a_dangerous_redirect_uri_when_registering_then_it_is_refused(
    pool: Pool, clock: Clock, uri: str
) -> None:
    with pytest.raises(registration.Rejected, match="redirect URI"):
        await register(pool, clock, ["https://app.example.com/ok", uri])
