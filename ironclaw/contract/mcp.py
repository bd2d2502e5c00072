"""The ``mcp.sock`` wire: how the sandboxed agent lists and calls MCP tools.

Both sides import this module: the host's MCP broker serves the two routes, the agent
offers what they list to the model. A tool reaches the model as ``<server>__<tool>``;
:func:`qualified_name` and :func:`split_name` are the one place that name is made and
taken apart, and :func:`tool_name_problem` the one rule a server's tool name must pass
before the host offers it (an identifier, no ``__``, never a built-in tool's name).

* ``GET /v1/tools`` answers ``{"tools": [{"name", "description", "input_schema"}]}``:
  the tools the agent group is granted now (read fresh for every request, so a
  revocation hides a tool at the agent's next listing).
* ``POST /v1/call`` takes ``{"name", "arguments"}`` and answers ``{"content": text,
  "is_error": bool}``, the server's result as text. A refusal is an error status with
  ``{"error", "detail"}``, like the egress broker's.
"""

from __future__ import annotations

import re

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "CALL_PATH",
    "MAX_ANSWER_BYTES",
    "MCP_HOST",
    "SEPARATOR",
    "TOOLS_PATH",
    "qualified_name",
    "split_name",
    "tool_name_problem",
]

TOOLS_PATH = "/v1/tools"
CALL_PATH = "/v1/call"
# The Host header of requests to the broker; it means nothing (the socket is the route).
MCP_HOST = "mcp.ironclaw.invalid"
SEPARATOR = "__"
# A broker answer never exceeds this (the host caps lists and results below it).
MAX_ANSWER_BYTES = 2 * 1024 * 1024

# A server's or tool's name: the agent's tool-name rule (lowercase word, 64 characters
# in all), so the qualified name is one too.
_PART = re.compile(r"[a-z][a-z0-9_]{0,62}")
_MAX_QUALIFIED = 64

# The agent's compiled-in tools, and the names no tool may carry (sandbox_agent's
# FORBIDDEN_TOOL_NAMES): an MCP tool named like one would pose as it to the model.
# tests/unit/mcp/test_mcp_agent_tools.py holds it to contain the agent's own lists.
BUILTIN_TOOL_NAMES = frozenset({
    "ask_user_question", "http_fetch", "list_destinations", "list_dir", "read_file",
    "read_persona", "request_api_access", "request_capability_change", "schedule_task",
    "send_file", "send_message", "web_search", "write_file", "list_tasks", "update_task",
    "pause_task", "resume_task", "cancel_task",
    "install_package", "install_packages", "add_mcp_server", "remove_mcp_server",
    "self_edit", "edit_self", "edit_source", "set_persona", "set_permissions",
    "set_enabled_tools", "grant_access", "create_agent", "shell", "exec", "bash", "sh",
    "run_command", "run_shell", "eval", "python", "spawn", "subprocess",
})


def part_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot be a server's or a tool's part of a qualified name."""
    if not _PART.fullmatch(name):
        return f"{what} {name[:80]!r} is not a lowercase identifier"
    if SEPARATOR in name or name.endswith("_"):
        return f"{what} {name[:80]!r} contains {SEPARATOR!r} or ends in '_'"
    return None


def tool_name_problem(server: str, tool: str) -> str | None:
    """Why the host must not offer ``tool`` of ``server`` (None when it may)."""
    problem = part_problem(server, "server") or part_problem(tool, "tool")
    if problem:
        return problem
    if tool in BUILTIN_TOOL_NAMES:
        return f"tool {tool!r} has the name of a built-in tool"
    if len(qualified_name(server, tool)) > _MAX_QUALIFIED:
        return f"{server}{SEPARATOR}{tool[:80]} is longer than {_MAX_QUALIFIED} characters"
    return None


def qualified_name(server: str, tool: str) -> str:
    return f"{server}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str] | None:
    """``(server, tool)`` of a qualified name, or None when it is not one."""
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or tool_name_problem(server, tool):
        return None
    return server, tool
