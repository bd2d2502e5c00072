"""The grammar every change kind's payload is built from: types, keys, counts and
identifier patterns.

Each kind's module in ``kinds/`` states its own shape with these parts. Everything here
is structure; policy (which host paths, package names, hosts, MCP servers) is the
kinds' verifiers' job. Unknown keys are refused, never ignored.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ironclaw.contract.jsonvalue import JSONValue


class PayloadError(ValueError):
    """The payload does not have its kind's shape."""


MAX_DOC_CHARS = 64 * 1024
MAX_TOOLS = 256

ENTITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOOL = re.compile(r"[a-z][a-z0-9_]{0,63}")
USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@#+-]{0,127}")
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MCP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def expect_object(value: JSONValue, what: str, allowed: tuple[str, ...],
                  required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise PayloadError(f"{what}: unknown key {unknown[0]!r:.40}")
    for key in required:
        if key not in value:
            raise PayloadError(f"{what}: missing {key!r}")
    return value


def expect_text(value: JSONValue, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be a string")
    if len(value) > max_chars:
        raise PayloadError(f"{what} is longer than {max_chars} characters")
    if any(ord(c) < 32 and c not in "\n\t\r" for c in value):
        raise PayloadError(f"{what} contains control characters")
    return value


def expect_ident(value: JSONValue, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PayloadError(f"{what}: invalid {value!r:.60}")
    return value


def expect_list(value: JSONValue, what: str, max_items: int, *, min_items: int = 0
                ) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a list")
    if not min_items <= len(value) <= max_items:
        raise PayloadError(f"{what} must have {min_items} to {max_items} entries")
    return value


def unique(items: list[str], what: str) -> tuple[str, ...]:
    if len(set(items)) != len(items):
        raise PayloadError(f"{what} lists an entry twice")
    return tuple(items)


def expect_strings(value: JSONValue, what: str, max_items: int, max_chars: int = 256,
                   *, min_items: int = 0) -> tuple[str, ...]:
    items = expect_list(value, what, max_items, min_items=min_items)
    return unique([expect_text(v, what, max_chars) for v in items], what)


def expect_bool(value: JSONValue, what: str) -> bool:
    if not isinstance(value, bool):
        raise PayloadError(f"{what} must be true or false")
    return value


def is_canonical_abs_path(path: str) -> bool:
    """Absolute, normalised (no ``.``/``..``/``//``/trailing slash), printable."""
    return (isinstance(path, str) and path.startswith("/") and not path.startswith("//")
            and path.isprintable() and ".." not in path.split("/")
            and posixpath.normpath(path) == path)
