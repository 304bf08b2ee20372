"""Request bodies and query strings read defensively: bounded, linear, and text-only.

Every check here runs before any client or user is authenticated, so each one must cost
time linear in the body and refuse early: a form of tens of thousands of fields, or one
whose parameter names are all the same, must not hold the event loop.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

MAX_FIELDS = 100
"""No form of ours has more than a dozen fields; a hundred leaves room for extensions."""


class BadBody(ValueError):
    """The body or query cannot be read as the text parameters it should be."""


def parse_urlencoded(raw: bytes, *, max_fields: int = MAX_FIELDS) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` (or a query string) as UTF-8 pairs, in order.

    The field count is checked on the raw bytes first, before anything is decoded.
    """
    if raw.count(b"&") + 1 > max_fields:
        raise BadBody(f"too many parameters (at most {max_fields})")
    try:
        return parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=max_fields,
        )
    except UnicodeDecodeError:
        raise BadBody("the parameters are not valid UTF-8") from None
    except ValueError:
        raise BadBody(f"too many parameters (at most {max_fields})") from None


def multi_items(
    items: Iterable[tuple[str, Any]], *, max_fields: int = MAX_FIELDS
) -> dict[str, list[str]]:
    """Name -> values in one pass; refuses file parts and more than ``max_fields`` fields."""
    out: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(items, start=1):
        if count > max_fields:
            raise BadBody(f"too many parameters (at most {max_fields})")
        if not isinstance(value, str):
            # A multipart file part: no parameter of ours is a file.
            raise BadBody(f"parameter {name!r} must be text, not a file")
        out.setdefault(name, []).append(value)
    return out


def repeated(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted; one pass (RFC 6749 §3.1, §3.2)."""
    return sorted(name for name, n in Counter(names).items() if n > 1)


def with_nul(fields: Mapping[str, Sequence[str]]) -> list[str]:
    """The names of the fields whose name or value holds NUL, which PostgreSQL text
    cannot store: refuse them at the edge rather than fail in a query."""
    return sorted(
        name
        for name, values in fields.items()
        if "\x00" in name or any("\x00" in v for v in values)
    )


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = repeated(name for name, _ in pairs)
    if names:
        raise BadBody(f"duplicate key in JSON object: {', '.join(names)}")
    return dict(pairs)


def _refuse_constant(name: str) -> None:
    raise BadBody(f"{name} is not JSON")


def strict_json_object(raw: bytes, *, max_fields: int = MAX_FIELDS) -> dict[str, Any]:
    """A JSON object whose keys are unique at every depth, with at most ``max_fields``.

    ``{"a": 1, "a": 2}`` is ambiguous (RFC 8259 §4: names SHOULD be unique) and parsers
    disagree on which value wins, so a proxy and this server could read two different
    requests; duplicate form parameters are refused (RFC 6749 §3.2), so these are too.
    msgspec keeps the last duplicate silently; the standard parser shows every pair.
    """
    try:
        data = json.loads(
            raw, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except BadBody:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadBody("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadBody("the JSON body must be an object")
    try:
        # "\ud800" escapes decode to a lone surrogate, which no UTF-8 text (and no
        # PostgreSQL text) can hold (RFC 8259 §8.2): find them in one linear pass.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("the body holds an unpaired surrogate") from None
    if len(data) > max_fields:
        raise BadBody(f"too many parameters (at most {max_fields})")
    return data
