"""What every command gets: its parsed arguments, the API client and the console."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import attrs

from .client import Api, Target, UsageError
from .output import Console

MAX_INPUT_BYTES = 1024 * 1024


@attrs.define
class Ctx:
    args: argparse.Namespace
    console: Console
    api: Api
    target: Target
    token: str | None
    env: Mapping[str, str]
    stdin: TextIO

    @property
    def json_mode(self) -> bool:
        return self.console.json_mode


def read_text_arg(value: str, stdin: TextIO | None = None, *, what: str = "value") -> str:
    """``TEXT`` as is, ``@path`` as the file's content, ``@-`` as standard input."""
    if not value.startswith("@"):
        return value
    where = value[1:]
    if not where:
        raise UsageError(f"{what}: '@' must be followed by a path (or '-' for stdin)")
    try:
        if where == "-":
            text = (stdin or sys.stdin).read(MAX_INPUT_BYTES + 1)
        else:
            with open(where, encoding="utf-8") as handle:
                text = handle.read(MAX_INPUT_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{what}: cannot read {where}: {reason}") from None
    if len(text) > MAX_INPUT_BYTES:
        raise UsageError(f"{what}: {where} is larger than {MAX_INPUT_BYTES} bytes")
    return text


def read_json_arg(value: str, stdin: TextIO | None = None, *, what: str = "payload") -> Any:
    text = read_text_arg(value, stdin, what=what)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
