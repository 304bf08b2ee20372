"""A user at a browser: read the form on a page, fill it in, press a button.

Deliberately independent of the app's templates beyond what a browser would see: the
forms are parsed with the standard library's HTML parser, hidden fields and all.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("type") == "hidden":
            self.forms[-1][1][values["name"]] = values.get("value", "")


def only_form(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The page's single form: its absolute action URL and its hidden fields."""
    parser = _Forms()
    parser.feed(page.text)
    assert len(parser.forms) == 1, page.text
    action, hidden = parser.forms[0]
    return urljoin(str(page.url), action), hidden


async def submit(
    browser: httpx.AsyncClient, page: httpx.Response, origin: str, **fields: str
) -> httpx.Response:
    """Submit the page's form as a browser would: hidden fields, the user's input, and
    the Origin and Fetch Metadata headers that browsers send with a form POST."""
    action, hidden = only_form(page)
    headers = {
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
    }
    return await browser.post(action, data={**hidden, **fields}, headers=headers)


async def sign_in_and_allow(
    browser: httpx.AsyncClient, authorization_url: str, username: str, password: str
) -> str:
    """Follow the authorization URL through login and consent; returns the Location the
    server sends the browser back to the client with."""
    origin = str(httpx.URL(authorization_url).copy_with(path="/", query=None)).rstrip("/")
    login = await browser.get(authorization_url)
    assert login.status_code == 200, login.text
    consent = await submit(
        browser, login, origin, action="login", username=username, password=password
    )
    assert consent.status_code == 200, consent.text
    assert 'value="allow"' in consent.text, consent.text
    answer = await submit(browser, consent, origin, action="allow")
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]
