"""Strict, bounded JSON for everything that crosses the wall or the gateway.

Canonical form (sorted keys, no whitespace, UTF-8, no NaN) makes a diff and a hash
of a change deterministic. Parsing refuses what the standard library would let
through: duplicate keys (two parsers could pick different ones), NaN and Infinity,
and nesting deep enough to exhaust the stack.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32

JSONValue = Any  # None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]


class JSONRejected(ValueError):
    """Input is not acceptable JSON for the contract."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONRejected(f"duplicate key {key!r:.40}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise JSONRejected(f"{name} is not JSON")


def _depth(value: Any, level: int = 0) -> None:
    if level > MAX_DEPTH:
        raise JSONRejected(f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, level + 1)


def parse_json(data: str | bytes, *, max_bytes: int) -> JSONValue:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JSONRejected(f"{len(raw)} bytes exceeds the {max_bytes}-byte cap")
    # Cheap pre-check so a pathological nesting never reaches the recursive parser.
    if raw.count(b"[") + raw.count(b"{") > 4 * MAX_DEPTH and _bracket_depth(raw) > MAX_DEPTH:
        raise JSONRejected(f"nested deeper than {MAX_DEPTH}")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constants)
    except JSONRejected:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JSONRejected(f"not JSON: {str(exc)[:120]}") from None
    _depth(value)
    return value


def _bracket_depth(raw: bytes) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def canonical_json(value: JSONValue) -> str:
    _depth(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise JSONRejected(f"not representable as canonical JSON: {exc}") from None
