"""What the MCP broker reports: metadata only.

``McpCall`` carries ids, the server's and tool's names, sizes, an outcome word and a
duration, never the arguments or the result (they carry whatever the user said or the
server found). ``McpServer`` tells when an instance starts, fails or stops, and how many
of the tools it listed were refused.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = ["McpCall", "McpServer", "McpSessionFailed"]


@attrs.frozen
class McpCall:
    """One request on a session's ``mcp.sock``: a listing or a tool call, allowed or
    not. ``outcome`` is a fixed word (``ok``, ``tool_error``, ``not_granted``,
    ``timeout``, ``server_failed``, ``too_large``, ``rate_limited``, ...)."""

    type: ClassVar[str] = "mcp.call"

    session_id: str
    agent_group_id: str
    operation: str  # list | call | other
    server: str
    tool: str
    status: int
    outcome: str
    request_bytes: int
    response_bytes: int
    duration_ms: float


@attrs.frozen
class McpServer:
    """A server instance of a session started, failed to start, or stopped; ``reason``
    is a fixed word (``malformed``, ``message_too_large``, ``timeout``, ``closed``,
    ``session_stopped``, ...)."""

    type: ClassVar[str] = "mcp.server"

    session_id: str
    agent_group_id: str
    server: str
    state: str
    reason: str
    tools: int
    refused_tools: int


@attrs.frozen
class McpSessionFailed:
    """A session's ``mcp.sock`` stopped serving on its own (not through
    ``stop_session``)."""

    type: ClassVar[str] = "mcp.session_failed"

    session_id: str
    error: str  # the exception's type name only
