"""Checking request input against the same JSON Schemas the OpenAPI document shows.

One schema, two uses: :mod:`.schemas` defines each request body once, the document
publishes it, and :func:`check` enforces it, so what the document promises is what
the server accepts. Only the keywords the schemas use are supported (``type``,
``properties``, ``required``, ``additionalProperties: false``, ``enum``,
``minLength``/``maxLength``, ``pattern``, ``minimum``/``maximum``/``exclusiveMinimum``,
``items``, ``maxItems``); a schema with anything else fails loudly at import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from quart import request

from ironclaw.contract.jsonvalue import JSONRejected, JSONValue, parse_json

from .errors import ApiError

SUPPORTED = frozenset({"type", "properties", "required", "additionalProperties", "enum",
                       "minLength", "maxLength", "pattern", "minimum", "maximum",
                       "exclusiveMinimum", "items", "maxItems", "description", "examples"})

_TYPES: Mapping[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),)}


def assert_supported(schema: Mapping[str, Any], where: str = "#") -> None:
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise AssertionError(f"{where}: unsupported schema keywords {sorted(unknown)}")
    for name, sub in schema.get("properties", {}).items():
        assert_supported(sub, f"{where}/{name}")
    if isinstance(schema.get("items"), Mapping):
        assert_supported(schema["items"], f"{where}/items")


def _is(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


def _matches(pattern: str, value: str) -> bool:
    """ECMA semantics for the anchored patterns the schemas use: Python's ``$`` would
    also match before a trailing newline, so match the inside with ``fullmatch``."""
    if pattern.startswith("^") and pattern.endswith("$"):
        return re.fullmatch(pattern[1:-1], value) is not None
    return re.search(pattern, value) is not None


def problems(value: JSONValue, schema: Mapping[str, Any], path: str = "") -> str | None:
    """The first way ``value`` breaks ``schema``, or None."""
    where = path or "body"
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(value, kind) for kind in allowed):
            return f"{where} must be {' or '.join(allowed)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} is too short"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} is longer than {schema['maxLength']} characters"
        if "pattern" in schema and not _matches(schema["pattern"], value):
            return f"{where} is not of the expected form"
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be at least {schema['minimum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return f"{where} must be more than {schema['exclusiveMinimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be at most {schema['maximum']}"
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} has more than {schema['maxItems']} items"
        for index, item in enumerate(value):
            found = problems(item, schema.get("items", {}), f"{where}[{index}]")
            if found:
                return found
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                return f"{where}.{name} is required" if path else f"{name} is required"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                return f"unknown field {extra[0]!r:.40}"
        for name, sub in properties.items():
            if name in value:
                found = problems(value[name], sub, f"{path}.{name}" if path else name)
                if found:
                    return found
    return None


def check(value: JSONValue, schema: Mapping[str, Any]) -> dict[str, Any]:
    found = problems(value, schema)
    if found:
        raise ApiError(400, found)
    assert isinstance(value, dict)
    return value


async def json_body(schema: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """The request's JSON body, checked. 413 past ``max_bytes``, 400 if malformed."""
    data = await request.get_data(cache=False, as_text=False)
    if len(data) > max_bytes:
        raise ApiError(413, f"the body is limited to {max_bytes} bytes")
    try:
        value = parse_json(data, max_bytes=max_bytes)
    except JSONRejected as exc:
        raise ApiError(400, f"the body is not acceptable JSON: {str(exc)[:120]}") from None
    return check(value, schema)


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise ApiError(400, f"{name} must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be between {minimum} and {maximum}")
    return value


def query_str(name: str, *, max_length: int = 128, choices: tuple[str, ...] | None = None
              ) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if len(raw) > max_length:
        raise ApiError(400, f"{name} is longer than {max_length} characters")
    if choices is not None and raw not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}")
    return raw
