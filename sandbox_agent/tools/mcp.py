"""MCP tools: what the host's MCP broker offers this agent, listed afresh every turn.

The host runs the MCP servers an approved ``mcp_access`` change granted the agent's
group, each in a sandbox of its own, and serves ``mcp.sock`` only to such a group. At
the start of every turn the agent asks the broker for the granted tools
(``GET /v1/tools``) and offers them to the model as ``<server>__<tool>`` with the
server's own input schema; a call goes to the broker (``POST /v1/call``), which checks
the grant again and runs it. Listing every turn is what makes a revocation visible:
a tool taken away is gone from the next turn's list, and refused by the broker even
if the model remembers it. The wire is in ``ironclaw.contract.mcp``.

Everything the broker answers came, in the end, from a server nobody vouched for: the
names must pass the same rule the host applied, schemas and descriptions are capped,
and a listing that fails leaves the turn with its compiled-in tools only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ironclaw.contract.mcp import (
    CALL_PATH,
    MAX_ANSWER_BYTES,
    MCP_HOST,
    TOOLS_PATH,
    split_name,
)

from .base import Tool, ToolContext, ToolError
from .brokers import BrokerRefusal, ask_broker

__all__ = ["McpTools"]

log = logging.getLogger(__name__)

MAX_TOOLS = 128
MAX_DESCRIPTION = 2000
# The host's own call deadline is shorter; this only catches a broker that hangs.
CALL_TIMEOUT_S = 90.0
LIST_TIMEOUT = httpx.Timeout(60.0)
CALL_TIMEOUT = httpx.Timeout(CALL_TIMEOUT_S)


class McpTools:
    """The session's MCP tools, through ``socket_path`` (``transport`` replaces the
    socket in tests)."""

    def __init__(self, socket_path: Path, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._socket_path = socket_path
        self._transport = transport

    async def list_tools(self) -> list[Tool]:
        """The tools granted now; empty when the broker cannot say."""
        try:
            answer = await self._request("GET", TOOLS_PATH, None, LIST_TIMEOUT)
        except ToolError as exc:
            log.warning("MCP tools unavailable this turn: %s", str(exc)[:200])
            return []
        listed = answer.get("tools")
        if not isinstance(listed, list):
            return []
        tools: list[Tool] = []
        for item in listed[:MAX_TOOLS]:
            tool = self._tool(item)
            if tool is not None:
                tools.append(tool)
        return tools

    def _tool(self, item: object) -> Tool | None:
        if not isinstance(item, dict):
            return None
        name, schema = item.get("name"), item.get("input_schema")
        description = item.get("description")
        if not isinstance(name, str) or split_name(name) is None:
            return None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return None
        text = description[:MAX_DESCRIPTION] if isinstance(description, str) else ""

        async def invoke(_ctx: ToolContext, args: Mapping[str, Any]) -> str:
            answer = await self._request("POST", CALL_PATH,
                                         {"name": name, "arguments": dict(args)}, CALL_TIMEOUT)
            content = answer.get("content")
            text = content if isinstance(content, str) else ""
            if answer.get("is_error") is True:
                raise ToolError(text or "the tool reported an error")
            return text

        return Tool(name, text or f"MCP tool {name}", schema, invoke,
                    timeout_s=CALL_TIMEOUT_S)

    async def _request(self, method: str, path: str, payload: Mapping[str, Any] | None,
                       limits: httpx.Timeout) -> dict[str, Any]:
        try:
            return await ask_broker(self._socket_path, host=MCP_HOST, what="MCP broker",
                                    method=method, path=path, payload=payload,
                                    limits=limits, max_answer_bytes=MAX_ANSWER_BYTES,
                                    transport=self._transport)
        except BrokerRefusal as refusal:
            raise ToolError(f"MCP refused ({refusal})") from None
