"""A8: which form POSTs a browser says came from our own pages.

The decision behind the 403 on /oauth/authorize, on the headers browsers really send:
Chromium under a `no-referrer` policy sent `Origin: null` with `Sec-Fetch-Site:
same-origin` for the server's own login form, and was refused.
"""

from __future__ import annotations

import pytest

from app.http.security import form_post_is_same_origin

ISSUER = "https://auth.example.com"


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        ("https://auth.example.com", "same-origin"),  # every current browser
        ("https://auth.example.com", None),  # Origin without Fetch Metadata (older Safari)
        ("null", "same-origin"),  # Chromium under a no-referrer policy
        (None, "same-origin"),  # a browser that omits Origin on same-origin POSTs
        (None, None),  # no browser headers at all: the CSRF token decides
    ],
)
def test_our_own_pages_posts_are_accepted(origin: str | None, fetch_site: str | None) -> None:
    assert form_post_is_same_origin(origin, fetch_site, ISSUER)


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        ("https://evil.example", "cross-site"),
        ("https://evil.example", None),
        ("https://evil.example", "same-origin"),  # Origin is believed over the rest
        ("https://sub.auth.example.com", "same-site"),  # a sibling subdomain is not us
        ("http://auth.example.com", "cross-site"),  # the same host on another scheme
        ("https://auth.example.com:8443", "same-site"),  # or another port
        ("null", "cross-site"),  # a sandboxed frame or data: page on another site
        ("null", "same-site"),
        ("null", None),  # an opaque origin with nothing to vouch for it
        (None, "cross-site"),
        (None, "same-site"),
    ],
)
def test_posts_from_anywhere_else_are_refused(origin: str | None, fetch_site: str | None) -> None:
    assert not form_post_is_same_origin(origin, fetch_site, ISSUER)


def test_the_issuer_origin_ignores_its_path() -> None:
    assert form_post_is_same_origin(
        "https://auth.example.com", "same-origin", "https://auth.example.com/tenant-a"
    )
