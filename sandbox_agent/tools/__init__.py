"""The compiled-in tools. None runs a shell; none changes the agent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import (
    FORBIDDEN_TOOL_NAMES,
    MANDATORY_TOOLS,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolRegistryError,
    turn_row_id,
)
from .files import FILE_TOOLS
from .host_requests import HOST_REQUEST_TOOLS
from .messaging import MESSAGING_TOOLS
from .web import web_tools

__all__ = [
    "FORBIDDEN_TOOL_NAMES",
    "MANDATORY_TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolRegistryError",
    "all_tools",
    "build_registry",
    "turn_row_id",
]


def all_tools(egress_socket: Path | None = None) -> ToolRegistry:
    """Every compiled-in tool; the web tools only with an egress socket (the host gives
    one only to a group that was granted egress)."""
    web = web_tools(egress_socket) if egress_socket is not None else ()
    return ToolRegistry((*MESSAGING_TOOLS, *FILE_TOOLS, *HOST_REQUEST_TOOLS, *web))


def build_registry(enabled: Sequence[str], *, egress_socket: Path | None = None
                   ) -> tuple[ToolRegistry, list[str]]:
    """The tools this agent may use, and the enabled names that match no tool."""
    return all_tools(egress_socket).filtered(enabled)
