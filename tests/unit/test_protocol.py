"""Protocol rules: PKCE (RFC 7636), redirect URI matching (RFC 9700, RFC 8252), scopes."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget
from ledger.protocol import (
    grant_scope,
    narrow_scope,
    parse_scope,
    redirect_uri_matches,
    redirect_uri_with,
    s256,
    select_redirect_uri,
    validate_code_challenge,
    validate_redirect_uri_registration,
    validate_resource,
    verify_pkce,
)

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

# --- PKCE ------------------------------------------------------------------------------


def test_s256_matches_the_rfc_7636_appendix_b_vector() -> None:
    assert s256(RFC_VERIFIER) == RFC_CHALLENGE


def test_the_rfc_verifier_verifies_against_its_challenge() -> None:
    verify_pkce(RFC_VERIFIER, RFC_CHALLENGE)


@pytest.mark.parametrize("length", [43, 128])
def test_verifier_of_boundary_length_is_accepted(length: int) -> None:
    verifier = ("aZ0-._~" * 20)[:length]
    verify_pkce(verifier, s256(verifier))


@pytest.mark.parametrize("length", [42, 129])
def test_verifier_of_wrong_length_is_refused_even_with_a_matching_challenge(length: int) -> None:
    verifier = "a" * length
    with pytest.raises(InvalidGrant, match="43 to 128"):
        verify_pkce(verifier, s256(verifier))


@pytest.mark.parametrize("bad", ["+", "/", "=", " ", "%", "é", "\n"])
def test_verifier_with_a_character_outside_unreserved_is_refused(bad: str) -> None:
    verifier = "a" * 42 + bad
    with pytest.raises(InvalidGrant, match="43 to 128"):
        verify_pkce(verifier, RFC_CHALLENGE)


@pytest.mark.parametrize("verifier", [None, ""])
def test_missing_verifier_is_refused(verifier: str | None) -> None:
    with pytest.raises(InvalidGrant, match="required"):
        verify_pkce(verifier, RFC_CHALLENGE)


def test_wrong_verifier_is_refused() -> None:
    with pytest.raises(InvalidGrant, match="does not match"):
        verify_pkce("x" * 43, RFC_CHALLENGE)


def test_plain_verifier_equal_to_the_challenge_is_refused() -> None:
    """A client doing 'plain' sends the verifier as the challenge; S256 must not accept it."""
    with pytest.raises(InvalidGrant, match="does not match"):
        verify_pkce(RFC_CHALLENGE, RFC_CHALLENGE)


def test_s256_challenge_is_accepted() -> None:
    assert validate_code_challenge(RFC_CHALLENGE, "S256") == RFC_CHALLENGE


@pytest.mark.parametrize(
    ("challenge", "method", "message"),
    [
        (RFC_CHALLENGE, "plain", "plain is not supported"),
        (RFC_CHALLENGE, "s256", "must be S256"),
        (RFC_CHALLENGE, None, "required and must be S256"),
        (None, "S256", "code_challenge is required"),
        ("", "S256", "code_challenge is required"),
        (RFC_CHALLENGE[:-1], "S256", "43 base64url"),
        (RFC_CHALLENGE + "A", "S256", "43 base64url"),
        (RFC_CHALLENGE[:-1] + "=", "S256", "43 base64url"),
        (RFC_CHALLENGE[:-1] + "+", "S256", "43 base64url"),
    ],
)
def test_challenge_refused(challenge: str | None, method: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate_code_challenge(challenge, method)


# --- redirect URIs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("https://app.example.com/cb", "https://app.example.com/cb"),
        ("https://app.example.com/cb?tenant=1", "https://app.example.com/cb?tenant=1"),
        ("com.example.app:/oauth2redirect", "com.example.app:/oauth2redirect"),
        ("urn:ietf:wg:oauth:2.0:oob", "urn:ietf:wg:oauth:2.0:oob"),
        # RFC 8252 §7.3: a loopback registration accepts any port.
        ("http://127.0.0.1:53682/cb", "http://127.0.0.1/cb"),
        ("http://127.0.0.1:1/cb", "http://127.0.0.1:8080/cb"),
        ("http://[::1]:53682/cb", "http://[::1]/cb"),
        ("http://localhost:3000/callback", "http://localhost/callback"),
        ("http://127.0.0.1/cb", "http://127.0.0.1:8080/cb"),
        ("http://127.0.0.1:9/cb?x=1", "http://127.0.0.1/cb?x=1"),
    ],
)
def test_redirect_uri_matches(requested: str, registered: str) -> None:
    assert redirect_uri_matches(requested, registered)


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        # a different path on a loopback host
        ("http://127.0.0.1:1/other", "http://127.0.0.1/cb"),
        # a host that only starts like a loopback address
        ("http://127.0.0.1.evil.com:1/cb", "http://127.0.0.1/cb"),
        # userinfo: the real host is evil.com
        ("http://127.0.0.1:1@evil.com/cb", "http://127.0.0.1/cb"),
        # another scheme than the registration's
        ("https://127.0.0.1/cb", "http://127.0.0.1/cb"),
        ("https://127.0.0.1:5000/cb", "http://127.0.0.1/cb"),
        # another loopback host than the registered one
        ("http://localhost:5000/cb", "http://127.0.0.1/cb"),
        ("http://127.0.0.1:5000/cb", "http://[::1]/cb"),
        # trailing slash, case of the path, an extra or missing query
        ("http://127.0.0.1:5000/cb/", "http://127.0.0.1/cb"),
        ("https://app.example.com/cb/", "https://app.example.com/cb"),
        ("http://127.0.0.1:5000/CB", "http://127.0.0.1/cb"),
        ("https://app.example.com/Cb", "https://app.example.com/cb"),
        ("http://127.0.0.1:5000/cb?x=1", "http://127.0.0.1/cb"),
        ("https://app.example.com/cb?x=1", "https://app.example.com/cb"),
        ("https://app.example.com/cb", "https://app.example.com/cb?x=1"),
        # a fragment, an invalid port
        ("http://127.0.0.1:5000/cb#x", "http://127.0.0.1/cb"),
        ("http://127.0.0.1:99999/cb", "http://127.0.0.1/cb"),
        # no port games on a non-loopback host
        ("https://app.example.com:8443/cb", "https://app.example.com/cb"),
        ("http://app.example.com:8080/cb", "http://app.example.com/cb"),
    ],
)
def test_redirect_uri_does_not_match(requested: str, registered: str) -> None:
    assert not redirect_uri_matches(requested, registered)


def test_an_omitted_redirect_uri_is_not_filled_in() -> None:
    assert select_redirect_uri(None, ["https://a.example/cb"]) is None
    assert select_redirect_uri(None, ["http://127.0.0.1/cb"]) is None


def test_select_redirect_uri_returns_the_requested_one_if_registered() -> None:
    registered = ["https://a.example/cb", "http://127.0.0.1/cb"]
    assert select_redirect_uri("http://127.0.0.1:4242/cb", registered) == (
        "http://127.0.0.1:4242/cb"
    )
    assert select_redirect_uri("https://evil.example/cb", registered) is None


# What real MCP clients register and then send (issue 9): VS Code, Claude Code, Cursor,
# claude.ai. Each must register, and its authorize redirect must match.
REAL_CLIENTS = [
    ("http://127.0.0.1/", "http://127.0.0.1:33418/"),  # VS Code
    ("http://127.0.0.1:33418/", "http://127.0.0.1:33418/"),  # VS Code, port registered
    ("http://127.0.0.1/", "http://127.0.0.1:33418"),  # an empty http path is "/"
    ("http://localhost:53123/callback", "http://localhost:61234/callback"),  # Claude Code
    (
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "cursor://anysphere.cursor-mcp/oauth/callback",
    ),
    ("https://claude.ai/api/mcp/auth_callback", "https://claude.ai/api/mcp/auth_callback"),
]


@pytest.mark.parametrize(("registered", "requested"), REAL_CLIENTS)
def test_given_a_real_mcp_clients_registration_when_it_authorizes_then_its_redirect_matches(
    registered: str, requested: str
) -> None:
    assert validate_redirect_uri_registration(registered) == registered
    assert select_redirect_uri(requested, [registered]) == requested


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app.example.com/cb?tenant=1",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "http://localhost/cb",
        "http://LOCALHOST:3000/cb",
        "com.example.app:/oauth2redirect",
        "com.example.app://oauth2redirect",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "urn:ietf:wg:oauth:2.0:oob:auto",
    ],
)
def test_redirect_uri_registration_accepted(uri: str) -> None:
    assert validate_redirect_uri_registration(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        # plain http to a host that is not loopback, or only looks like one
        "http://app.example.com/cb",
        "http://127.0.0.1.evil.com/cb",
        "http://localhost.evil.com/cb",
        "http://[::1]evil.com/cb",
        # schemes a browser runs or reads itself (A14), in any case
        "javascript:alert(document.domain)//",
        "JavaScript:alert(1)",
        "javascript://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "blob:https://app.example.com/uuid",
        "about:blank",
        # whitespace and controls: browsers strip them ("java\tscript:" runs as javascript:)
        "java\tscript:alert(1)",
        " https://app.example.com/cb",
        "https://app.example.com/c b",
        "https://app.example.com/cb\n",
        "https://app.example.com/\x00",
        # fragments, even empty; userinfo
        "https://app.example.com/cb#frag",
        "https://app.example.com/cb#",
        "com.example.app:/cb#x",
        "https://user@app.example.com/cb",
        "https://app.example.com:1@evil.com/cb",
        "http://127.0.0.1:1@evil.com/cb",
        "cursor://user@anysphere.cursor-mcp/cb",
        # not absolute; no host; a port that is not a number; other URNs
        "/cb",
        "cb",
        "",
        "https:///cb",
        "https://app.example.com:port/cb",
        "urn:example:cb",
        "https://app.example.com/" + "a" * 2000,
    ],
)
def test_redirect_uri_registration_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="redirect URI"):
        validate_redirect_uri_registration(uri)


def test_given_a_javascript_uri_registered_before_the_rules_then_it_is_never_selected() -> None:
    """A client stored before A14 was enforced keeps its events; its URI is never used."""
    registered = ["javascript:alert(1)"]
    assert select_redirect_uri("javascript:alert(1)", registered) is None


# --- scopes ----------------------------------------------------------------------------


def test_parse_scope_splits_on_single_spaces_and_drops_duplicates() -> None:
    assert parse_scope("mcp read mcp") == ["mcp", "read"]
    assert parse_scope(None) == []


@pytest.mark.parametrize("scope", ["", " mcp", "mcp ", "mcp  read", 'mc"p', "mc\\p", "mcp\tread"])
def test_malformed_scope_is_refused(scope: str) -> None:
    with pytest.raises(InvalidScope, match="malformed"):
        parse_scope(scope)


def test_grant_scope_accepts_allowed_tokens_in_canonical_order() -> None:
    assert grant_scope("write read", ["read", "write", "mcp"], ["mcp"]) == "read write"


def test_grant_scope_uses_the_default_when_none_is_requested() -> None:
    assert grant_scope(None, ["read", "mcp"], ["mcp"]) == "mcp"


def test_grant_scope_refuses_a_token_the_client_may_not_have() -> None:
    with pytest.raises(InvalidScope, match="admin"):
        grant_scope("mcp admin", ["mcp"], ["mcp"])


def test_grant_scope_refuses_when_nothing_is_requested_and_there_is_no_default() -> None:
    with pytest.raises(InvalidScope, match="no default"):
        grant_scope(None, ["mcp"], [])


@pytest.mark.parametrize(
    ("requested", "narrowed"),
    [(None, "mcp read write"), ("", "mcp read write"), ("write mcp", "mcp write")],
)
def test_narrow_scope_keeps_or_narrows_the_grant(requested: str | None, narrowed: str) -> None:
    assert narrow_scope(requested, "mcp read write") == narrowed


@pytest.mark.parametrize("requested", ["mcp admin", "admin", "MCP"])
def test_narrow_scope_refuses_anything_wider(requested: str) -> None:
    with pytest.raises(InvalidScope, match="exceeds the original grant"):
        narrow_scope(requested, "mcp read")


# --- resources -------------------------------------------------------------------------


def test_resource_must_be_absolute_without_fragment() -> None:
    assert validate_resource(None) is None
    assert validate_resource("https://api.example.com/mcp") == "https://api.example.com/mcp"
    for bad in ["/mcp", "api.example.com", "https://api.example.com/mcp#x"]:
        with pytest.raises(InvalidTarget):
            validate_resource(bad)


# --- the authorization response (RFC 6749 §3.1.2, §4.1.2) -----------------------------


def test_response_parameters_keep_the_redirect_uris_own_query() -> None:
    uri = redirect_uri_with("https://app.example.com/cb?tenant=a", {"code": "c", "state": "s"})
    assert uri == "https://app.example.com/cb?tenant=a&code=c&state=s"


def test_response_parameters_are_form_encoded() -> None:
    uri = redirect_uri_with(
        "http://127.0.0.1:5000/cb", {"state": "a b&c=d", "iss": "https://as.example.com"}
    )
    assert uri == "http://127.0.0.1:5000/cb?state=a+b%26c%3Dd&iss=https%3A%2F%2Fas.example.com"
