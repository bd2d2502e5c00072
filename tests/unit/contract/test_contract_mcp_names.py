"""The MCP tool-name rule both sides apply: a qualified name splits back into exactly
its parts, and no name the rule accepts can be taken for a built-in tool or for
another server's tool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ironclaw.contract.mcp import (
    BUILTIN_TOOL_NAMES,
    qualified_name,
    split_name,
    tool_name_problem,
)

PART = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


@given(PART, PART)
def test_an_accepted_name_splits_back_into_its_parts(server: str, tool: str) -> None:
    if tool_name_problem(server, tool) is None:
        assert split_name(qualified_name(server, tool)) == (server, tool)
    else:
        assert split_name(qualified_name(server, tool)) != (server, tool)


@given(st.text(max_size=80))
def test_whatever_a_server_sends_an_accepted_name_is_one_identifier_pair(text: str) -> None:
    split = split_name(text)
    if split is not None:
        server, tool = split
        assert "__" not in server and "__" not in tool
        assert tool not in BUILTIN_TOOL_NAMES
        assert text == qualified_name(server, tool) and len(text) <= 64
        assert text.isascii() and text.replace("_", "").isalnum() and text.islower()


def test_built_in_names_and_separators_are_refused() -> None:
    assert tool_name_problem("srv", "send_message")
    assert tool_name_problem("srv", "a__b")
    assert tool_name_problem("s__v", "tool")
    assert tool_name_problem("srv", "tool_")
    assert tool_name_problem("srv", "Tool")
    assert tool_name_problem("srv", "x" * 64)
    assert tool_name_problem("srv", "lookup") is None
