"""The readable change diff a person approves from: in ``ironctl change show`` and in
a chat approval prompt alike, so both show one change the same way.

Built on the contract's structural diff; it only expands and shortens for reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ironclaw.contract.gateway import DiffEntry, json_diff

MAX_VALUE = 200


def change_diff(before: Any, after: Any) -> list[DiffEntry]:
    """The structural diff of a change. A change that creates something (``before``
    null) is shown as the fields it adds, not as one opaque replacement."""
    if before is None and isinstance(after, dict):
        before = {}
    elif before is None and isinstance(after, list):
        before = []
    try:
        entries = json_diff(before, after)
    except ValueError:  # too deep to render canonically
        return [DiffEntry("", "replace", before="(unrenderable)", after="(unrenderable)")]
    return [leaf for entry in entries for leaf in _expand(entry)]


def _expand(entry: DiffEntry) -> list[DiffEntry]:
    """An added or removed non-empty object, one line per field (recursively)."""
    value = entry.after if entry.op == "add" else entry.before
    if entry.op not in ("add", "remove") or not isinstance(value, dict) or not value:
        return [entry]
    found = []
    for key in sorted(value):
        sub = f"{entry.path}/{str(key).replace('~', '~0').replace('/', '~1')}"
        part = (DiffEntry(sub, "add", after=value[key]) if entry.op == "add"
                else DiffEntry(sub, "remove", before=value[key]))
        found += _expand(part)
    return found


def _value(value: object, full: bool) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    if not full and len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + f"… ({len(text)} chars)"
    return text


def diff_lines(entries: Iterable[DiffEntry], *, full: bool = False) -> list[str]:
    lines = []
    for entry in entries:
        path = entry.path or "/"
        if entry.op == "add":
            lines.append(f"+ {path}: {_value(entry.after, full)}")
        elif entry.op == "remove":
            lines.append(f"- {path}: {_value(entry.before, full)}")
        else:
            lines.append(f"~ {path}: {_value(entry.before, full)} -> "
                         f"{_value(entry.after, full)}")
    return lines
