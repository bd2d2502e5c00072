"""The broker's wire format: JSON requests in, JSON answers out.

Everything here is untrusted input from the sandbox, checked for type, size and
grammar; anything else is a :class:`~ironclaw.host.egress.policy.Refused` with 400 and
a short reason. Unknown keys are refused, not ignored. See ``docs/egress.md`` for the
protocol as the agent sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

from .events import Outcome
from .policy import MAX_URL_CHARS, Refused

__all__ = ["FetchRequest", "SearchRequest", "SearchResult", "error_body", "parse_fetch",
           "parse_search", "render_fetch", "render_search"]

METHODS = ("GET", "POST", "HEAD")
MAX_HEADERS = 32
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 4096
MAX_QUERY_CHARS = 512
DEFAULT_RESULTS = 5
MAX_RESULTS = 20
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@attrs.frozen
class FetchRequest:
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class SearchRequest:
    query: str
    max_results: int = DEFAULT_RESULTS


@attrs.frozen
class SearchResult:
    title: str
    url: str
    snippet: str


def _bad(detail: str) -> Refused:
    return Refused(400, Outcome.BAD_REQUEST, detail)


def _object(body: bytes, allowed: Sequence[str], max_bytes: int) -> dict[str, Any]:
    try:
        value = parse_json(body, max_bytes=max_bytes)
    except JSONRejected as exc:
        raise _bad(f"the request body is not acceptable JSON ({exc})"[:300]) from None
    if not isinstance(value, dict):
        raise _bad("the request body must be a JSON object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r:.60}; known: {', '.join(allowed)}")
    return value


def _string(obj: Mapping[str, Any], name: str, *, max_chars: int, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _bad(f"{name!r} is required")
        return None
    if not isinstance(value, str):
        raise _bad(f"{name!r} must be a string")
    if len(value) > max_chars:
        raise _bad(f"{name!r} exceeds {max_chars} characters")
    if "\x00" in value:
        raise _bad(f"{name!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name!r} is not valid Unicode text (a lone surrogate)") from None
    return value


def _headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise _bad(f"'headers' must be an object of at most {MAX_HEADERS} names")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
            raise _bad(f"header name {name!r:.80} is not an HTTP token")
        if not isinstance(item, str) or len(item) > MAX_HEADER_VALUE:
            raise _bad(f"header {name!r:.80} must be a string of at most "
                       f"{MAX_HEADER_VALUE} characters")
        if any(ord(ch) > 0xFF or (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F
               for ch in item):
            raise _bad(f"header {name!r:.80} contains a control or non-Latin-1 character")
        lower = name.lower()
        if lower in out:
            raise _bad(f"header {name!r:.80} is given twice")
        out[lower] = item.strip(" \t")
    return out


def parse_fetch(body: bytes, *, max_request_bytes: int, max_body_bytes: int) -> FetchRequest:
    obj = _object(body, ("url", "method", "headers", "body"), max_request_bytes)
    url = _string(obj, "url", max_chars=MAX_URL_CHARS, required=True)
    assert url is not None
    method = _string(obj, "method", max_chars=8, required=False) or "GET"
    if method not in METHODS:
        raise _bad(f"'method' must be one of {', '.join(METHODS)}")
    headers = _headers(obj.get("headers"))
    text = _string(obj, "body", max_chars=max_request_bytes, required=False)
    payload = b""
    if text is not None:
        if method != "POST":
            raise _bad("only a POST carries a body")
        payload = text.encode("utf-8")
        if len(payload) > max_body_bytes:
            raise Refused(413, Outcome.TOO_LARGE,
                          f"'body' exceeds the {max_body_bytes}-byte cap")
    return FetchRequest(url, method, headers, payload)


def parse_search(body: bytes, *, max_request_bytes: int) -> SearchRequest:
    obj = _object(body, ("query", "max_results"), max_request_bytes)
    query = _string(obj, "query", max_chars=MAX_QUERY_CHARS, required=True)
    assert query is not None
    if not query.strip():
        raise _bad("'query' must not be empty")
    count = obj.get("max_results", DEFAULT_RESULTS)
    if count is None:
        count = DEFAULT_RESULTS
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RESULTS:
        raise _bad(f"'max_results' must be an integer from 1 to {MAX_RESULTS}")
    return SearchRequest(query.strip(), count)


def _dump(value: object) -> bytes:
    # A lone surrogate (possible in upstream JSON) becomes "?": the answer is always
    # valid UTF-8.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "replace")


def render_fetch(*, status: int, headers: Mapping[str, str], body: str, truncated: bool,
                 url: str) -> bytes:
    return _dump({"status": status, "headers": dict(headers), "body": body,
                  "truncated": truncated, "url": url})


def render_search(results: Sequence[SearchResult]) -> bytes:
    return _dump({"results": [attrs.asdict(r) for r in results]})


def error_body(outcome: Outcome, detail: str) -> bytes:
    return _dump({"error": outcome.value, "detail": detail})
