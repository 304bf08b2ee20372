"""Protocol rules as pure functions: PKCE, redirect URI matching, scopes, resources."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

from ledger.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget

# RFC 7636 §4.1: code_verifier = 43*128unreserved; the S256 challenge is base64url
# without padding of a 32-byte digest, so exactly 43 characters of the same alphabet.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validate_code_challenge(challenge: str | None, method: str | None) -> str:
    """RFC 7636 §4.3, with OAuth 2.1's rule that only S256 is accepted."""
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE, S256)")
    if method is None:
        # RFC 7636 would default to plain, which OAuth 2.1 and this server refuse.
        raise InvalidRequest("code_challenge_method is required and must be S256")
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256; plain is not supported")
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters (S256)")
    return challenge


def verify_pkce(verifier: str | None, challenge: str) -> None:
    """RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge."""
    if not verifier:
        raise InvalidGrant("code_verifier is required")
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidGrant("code_verifier must be 43 to 128 unreserved characters")
    if not hmac.compare_digest(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")


def _is_loopback(parts: SplitResult) -> bool:
    return parts.scheme == "http" and _host_of(parts) in LOOPBACK_HOSTS


def _host_of(parts: SplitResult) -> str:
    """The host exactly as written (netloc minus port), brackets kept for IPv6."""
    netloc = parts.netloc
    if "@" in netloc:
        return ""  # userinfo never matches a loopback registration
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1 or netloc[end + 1 : end + 2] not in ("", ":"):
            return ""  # anything but a port after the brackets: "[::1]evil.com" is no loopback
        return netloc[: end + 1].lower()
    return netloc.rsplit(":", 1)[0].lower() if ":" in netloc else netloc.lower()


def _port_of(parts: SplitResult) -> str | None:
    try:
        port = parts.port
    except ValueError:
        return "invalid"
    return None if port is None else str(port)


def redirect_uri_matches(requested: str, registered: str) -> bool:
    """Exact string match (RFC 9700 §4.1.3), except that a loopback registration accepts
    any port on the same scheme, host, path and query (RFC 8252 §7.3)."""
    if requested == registered:
        return True
    try:
        req, reg = urlsplit(requested), urlsplit(registered)
    except ValueError:
        return False
    if not (_is_loopback(reg) and _is_loopback(req)):
        return False
    # "#" rather than .fragment: an empty fragment ("/cb#") is still a fragment (§3.1.2).
    if _port_of(req) == "invalid" or "#" in requested or "#" in registered:
        return False
    # RFC 3986 §6.2.3: an empty http path is "/" (VS Code registers "http://127.0.0.1/").
    return (
        _host_of(req) == _host_of(reg)
        and (req.path or "/") == (reg.path or "/")
        and req.query == reg.query
        and req.username is None
    )


def select_redirect_uri(requested: str | None, registered: list[str]) -> str | None:
    """The redirect URI to use, or None when it is missing or not one of the client's.

    OAuth 2.1 §4.1.1 lets a client with one registered URI omit it; this server always
    asks for it, since a loopback registration needs the port anyway and the token
    request must then repeat it (RFC 6749 §4.1.3).
    """
    if requested is None:
        return None
    if not any(redirect_uri_matches(requested, r) for r in registered):
        return None
    try:
        # A registration from before the rules of A14 (a ``javascript:`` URI) is never used.
        return validate_redirect_uri_registration(requested)
    except ValueError:
        return None


def redirect_uri_with(uri: str, params: Mapping[str, str]) -> str:
    """Add response parameters to the client's redirect URI, keeping its own query
    (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# Schemes a browser runs or reads locally instead of handing to an app: a redirect to one
# would run the client's code (or an attacker's) with the code in hand (A14).
_DANGEROUS_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "blob", "about", "filesystem", "view-source"}
)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_OOB_URIS = ("urn:ietf:wg:oauth:2.0:oob", "urn:ietf:wg:oauth:2.0:oob:auto")
MAX_REDIRECT_URI_LENGTH = 2000


def validate_redirect_uri_registration(uri: str) -> str:
    """What a client may register (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1.3).

    Accepted: https to any host; http only to a loopback host (RFC 8252 §7.3); a
    private-use scheme for native apps (RFC 8252 §7.1: ``com.example.app:/cb``, and
    ``cursor://anysphere.cursor-mcp/oauth/callback``, whose scheme has no dot but is no
    browser's); the legacy OOB URNs. Refused: schemes a browser executes or reads locally
    (``javascript:``, ``data:``, ``file:``, ``vbscript:`` ...), fragments (even an empty
    one), userinfo, whitespace and control characters (which browsers strip, so that
    ``java\tscript:`` would be ``javascript:`` to them).
    """
    if uri in _OOB_URIS:
        return uri
    if not uri or len(uri) > MAX_REDIRECT_URI_LENGTH:
        raise ValueError(f"redirect URI must be 1 to {MAX_REDIRECT_URI_LENGTH} characters")
    if any(not ("\x21" <= c <= "\x7e") for c in uri):
        raise ValueError(
            f"redirect URI {uri!r} may hold only printable ASCII, without spaces or controls"
        )
    scheme, sep, _ = uri.partition(":")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ValueError(f"redirect URI {uri!r} must be absolute")
    if scheme in _DANGEROUS_SCHEMES or scheme == "urn":
        raise ValueError(f"redirect URI {uri!r}: the scheme {scheme!r} is not allowed")
    if "#" in uri:
        raise ValueError(f"redirect URI {uri!r} must have no fragment")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"redirect URI {uri!r} is malformed") from None
    if "@" in parts.netloc:
        raise ValueError(f"redirect URI {uri!r} must have no userinfo")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError(f"redirect URI {uri!r} has no host")
    if scheme == "http" and not _is_loopback(parts):
        raise ValueError(
            f"redirect URI {uri!r}: plain http is allowed only for a loopback host"
            " (127.0.0.1, [::1], localhost)"
        )
    return uri


def parse_scope(scope: str | None) -> list[str]:
    """RFC 6749 §3.3: space-delimited, case-sensitive tokens; order does not matter."""
    if scope is None:
        return []
    tokens = scope.split(" ")
    if any(not t or not _SCOPE_TOKEN.fullmatch(t) for t in tokens):
        raise InvalidScope("scope is malformed")
    return list(dict.fromkeys(tokens))


def format_scope(scopes: list[str]) -> str:
    return " ".join(sorted(set(scopes)))


def grant_scope(requested: str | None, allowed: list[str], default: list[str]) -> str:
    """The scope of a new grant: the requested one if every token is allowed, else
    ``invalid_scope``; the default when none is requested (RFC 6749 §3.3)."""
    tokens = parse_scope(requested) if requested is not None else list(default)
    if not tokens:
        raise InvalidScope("no scope was requested and the client has no default")
    unknown = [t for t in tokens if t not in allowed]
    if unknown:
        raise InvalidScope(f"scope not allowed for this client: {' '.join(unknown)}")
    return format_scope(tokens)


def narrow_scope(requested: str | None, granted: str) -> str:
    """RFC 6749 §6: a refresh may ask for the granted scope or a subset of it."""
    if requested is None or requested == "":
        return granted
    tokens = parse_scope(requested)
    wider = [t for t in tokens if t not in granted.split(" ")]
    if wider:
        raise InvalidScope(f"scope exceeds the original grant: {' '.join(wider)}")
    return format_scope(tokens)


def validate_resource(resource: str | None) -> str | None:
    """RFC 8707 §2: an absolute URI without a fragment."""
    if resource is None:
        return None
    parts = urlsplit(resource)
    if not parts.scheme or not parts.netloc or parts.fragment:
        raise InvalidTarget("resource must be an absolute URI without a fragment")
    return resource
