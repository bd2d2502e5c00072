"""The compiled-in tools. None runs a shell; none changes the agent."""

from __future__ import annotations

from collections.abc import Sequence

from .base import (
    FORBIDDEN_TOOL_NAMES,
    MANDATORY_TOOLS,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolRegistryError,
)
from .files import FILE_TOOLS
from .host_requests import HOST_REQUEST_TOOLS
from .messaging import MESSAGING_TOOLS

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
]


def all_tools() -> ToolRegistry:
    return ToolRegistry((*MESSAGING_TOOLS, *FILE_TOOLS, *HOST_REQUEST_TOOLS))


def build_registry(enabled: Sequence[str]) -> tuple[ToolRegistry, list[str]]:
    """The tools this agent may use, and the enabled names that match no tool."""
    return all_tools().filtered(enabled)
