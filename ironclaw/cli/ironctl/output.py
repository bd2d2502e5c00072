"""Everything ironctl prints goes through a :class:`Console`: human tables, JSON, the
change diff (shaped by ``ironclaw.changediff``), and error lines. The console redacts
the API token from every line it writes, so no code path (an echoed error detail, a
payload, a traceback text) can print it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

REDACTED = "***"
MAX_CELL = 60
MAX_LAST = 160

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], object]]


class Console:
    """Where output goes (stdout for results, stderr for notes and errors)."""

    def __init__(self, out: TextIO, err: TextIO, *, json_mode: bool = False,
                 secrets: Iterable[str] = ()) -> None:
        self._out = out
        self._err = err
        self.json_mode = json_mode
        self._secrets = [s for s in secrets if s]

    def add_secret(self, secret: str | None) -> None:
        if secret:
            self._secrets.append(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def line(self, text: str = "", *, end: str = "\n") -> None:
        self._out.write(self.redact(text) + end)
        self._out.flush()

    def note(self, text: str) -> None:
        self._err.write(self.redact(text) + "\n")
        self._err.flush()

    def json(self, value: object, *, compact: bool = False) -> None:
        text = (json.dumps(value, separators=(",", ":"), ensure_ascii=False) if compact
                else json.dumps(value, indent=2, ensure_ascii=False))
        self.line(text)

    def raw(self, text: str) -> None:
        """Pass-through output (NDJSON export): redacted, unchanged otherwise."""
        self._out.write(self.redact(text))
        self._out.flush()

    def table(self, rows: Sequence[Row], columns: Sequence[Column], *,
              empty: str = "(none)") -> None:
        if not rows:
            self.line(empty)
            return
        for text in render_table(rows, columns):
            self.line(text)


def cell(value: object, limit: int = MAX_CELL) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = " ".join(text.split())  # one line per row, whatever the value holds
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_table(rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    """Aligned columns; the last one (often free text) may run longer."""
    last = len(columns) - 1
    cells = [[cell(get(row), MAX_LAST if i == last else MAX_CELL)
              for i, (_, get) in enumerate(columns)] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return [fmt(headers)] + [fmt(r) for r in cells]


def when(us: object) -> str | None:
    """An API timestamp (integer microseconds, UTC) as ``YYYY-MM-DD HH:MM:SSZ``."""
    if isinstance(us, bool) or not isinstance(us, int):
        return None
    try:
        moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(us)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def key_values(fields: Mapping[str, Any], limit: int = 80) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, str) and value and " " not in value and "=" not in value:
            text = value
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        parts.append(f"{key}={text}")
    return " ".join(parts)
