"""docs/mcp.md lists every ``[mcp.limits]`` setting with its default, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from ironclaw.host.mcp import McpLimits

DOC = Path(__file__).resolve().parents[3] / "docs" / "mcp.md"


def test_the_limits_table_is_mcp_limits() -> None:
    text = DOC.read_text()
    table = text[text.index("<!-- mcp limits"):text.index("<!-- end of mcp limits")]
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([0-9.]+) \|", table, re.MULTILINE))
    assert rows == {field.name: str(field.default) for field in attrs.fields(McpLimits)}
