"""The shared body readers of app/http/forms.py: bounded, one pass, unambiguous."""

from __future__ import annotations

import pytest

from app.http.forms import (
    MAX_FIELDS,
    BadBody,
    multi_items,
    parse_urlencoded,
    repeated,
    strict_json_object,
)


def test_repeated_names_are_found_once_each_and_sorted() -> None:
    assert repeated(["b", "a", "b", "c", "a", "b"]) == ["a", "b"]
    assert repeated([]) == []


def test_urlencoded_is_capped_before_decoding() -> None:
    assert len(parse_urlencoded(b"&".join([b"a="] * MAX_FIELDS))) == MAX_FIELDS
    with pytest.raises(BadBody, match="too many"):
        parse_urlencoded(b"&".join([b"a="] * (MAX_FIELDS + 1)))
    with pytest.raises(BadBody, match="too many"):  # not valid UTF-8 either: cap first
        parse_urlencoded(b"\xff" + b"&" * MAX_FIELDS)


def test_urlencoded_must_be_utf8() -> None:
    assert parse_urlencoded(b"a=%C3%A9") == [("a", "\u00e9")]
    with pytest.raises(BadBody, match="UTF-8"):
        parse_urlencoded(b"a=%ff")


def test_multi_items_refuses_files_and_too_many_fields() -> None:
    assert multi_items([("a", "1"), ("b", "2"), ("a", "3")]) == {"a": ["1", "3"], "b": ["2"]}
    with pytest.raises(BadBody, match="file"):
        multi_items([("a", object())])
    with pytest.raises(BadBody, match="too many"):
        multi_items([("a", "")] * (MAX_FIELDS + 1))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "1", "a": "2"}',
        b'{"a": "1", "b": {"c": 1, "c": 2}}',
        b'{"grant_type": "refresh_token", "grant_type": "authorization_code"}',
    ],
)
def test_json_with_duplicate_keys_is_refused(raw: bytes) -> None:
    with pytest.raises(BadBody, match="duplicate key"):
        strict_json_object(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'"a"',
        b"null",
        b"{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff",
        b"[" * 100_000,
        b'{"a": "\\ud800"}',
    ],
)
def test_json_that_is_not_one_plain_object_is_refused(raw: bytes) -> None:
    with pytest.raises(BadBody):
        strict_json_object(raw)


def test_json_object_is_capped_and_otherwise_read_as_is() -> None:
    assert strict_json_object(b'{"a": "1", "b": {"a": 2}}') == {"a": "1", "b": {"a": 2}}
    many = "{" + ", ".join(f'"k{i}": 1' for i in range(MAX_FIELDS + 1)) + "}"
    with pytest.raises(BadBody, match="too many"):
        strict_json_object(many.encode())
