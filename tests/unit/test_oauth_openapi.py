"""/oauth/openapi.json says what the server refuses that a schema of strings cannot:
a parameter sent more than once (RFC 6749 §3.1)."""

from __future__ import annotations

from typing import Any

import pytest

from app.http.openapi import DOCUMENT, ONCE

# The endpoints that refuse a repeated parameter: the token, revocation and
# introspection forms (any parameter), and the authorization request's OAuth parameters.
_FORMS = [("/oauth/token", "post"), ("/oauth/revoke", "post"), ("/oauth/introspect", "post")]


@pytest.mark.parametrize(("path", "method"), _FORMS)
def test_each_form_parameter_says_a_repeat_is_refused(path: str, method: str) -> None:
    body = DOCUMENT["paths"][path][method]["requestBody"]["content"]
    properties: dict[str, Any] = body["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert properties
    for name, schema in properties.items():
        assert schema.get("description") == ONCE, name


def test_each_authorization_request_parameter_says_a_repeat_is_refused() -> None:
    parameters = DOCUMENT["paths"]["/oauth/authorize"]["get"]["parameters"]
    assert parameters
    for parameter in parameters:
        assert parameter.get("description") == ONCE, parameter["name"]
