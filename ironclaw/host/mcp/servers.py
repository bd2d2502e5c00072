"""One session's MCP server instances: started at first use, one per server, stopped
with the session.

:class:`SessionServers` keeps a slot per catalogue server the session has used. A slot
runs its instance in a task of the session's nursery: the launcher's context manager
(the server's process or sandbox), the SDK session over its pipes, and the tool list
read once at start, checked and capped. A call waits for its slot to be ready, then
runs under the call deadline; a call that times out, and any protocol breach, ends the
instance (the next use starts a fresh one), and every call still in flight on an
instance that ends is cancelled at once with the instance's reason. One session's
servers never touch another's.

The scope of an instance (one per session per server) is decided here and only here:
:func:`instance_key` names the instance a session and a server share.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import mcp_types
import trio
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from ironclaw.contract.mcp import tool_name_problem

from .client import Breach, ServerMisbehaved, open_client_session
from .config import McpCatalogEntry, McpLimits
from .launch import McpServerLauncher, ServerPlace

__all__ = ["CallFailed", "OfferedTool", "SessionServers", "ToolAnswer", "instance_key"]

logger = logging.getLogger(__name__)

_MAX_LIST_PAGES = 4
_SETTLE_S = 10.0


def instance_key(session_id: str, server: str) -> tuple[str, str]:
    """Which instance serves ``server`` for ``session_id``: one per session per server."""
    return session_id, server


class CallFailed(Exception):
    """A listing or call could not be served; ``outcome`` is a fixed word."""

    def __init__(self, status: int, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.outcome, self.detail = status, outcome, detail


@attrs.frozen
class OfferedTool:
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]


@attrs.frozen
class ToolAnswer:
    text: str
    is_error: bool


@attrs.define(eq=False)
class _Slot:
    entry: McpCatalogEntry
    ready: trio.Event = attrs.Factory(trio.Event)
    ended: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    session: Any = None  # the SDK ClientSession while the instance runs
    tools: dict[str, OfferedTool] = attrs.Factory(dict)
    refused_tools: int = 0
    reason: str = ""  # why it ended
    breach: Breach = attrs.Factory(Breach)
    calls: set[trio.CancelScope] = attrs.Factory(set)

    def end(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.scope.cancel()


@attrs.frozen
class ServerReport:
    """What a slot tells the broker when its instance starts or ends."""

    server: str
    state: str  # started | failed | stopped
    reason: str
    tools: int
    refused_tools: int


class SessionServers:
    """The server instances of one session. Use inside the session's nursery; leaving
    that nursery stops them all."""

    def __init__(self, *, session_id: str, agent_group_id: str, root: Path,
                 workspace: Path, launcher: McpServerLauncher, limits: McpLimits,
                 nursery: trio.Nursery, report: Callable[[ServerReport], None]) -> None:
        self._session_id = session_id
        self._group = agent_group_id
        self._root = root
        self._workspace = workspace
        self._launcher = launcher
        self._limits = limits
        self._nursery = nursery
        self._report = report
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def tools(self, entry: McpCatalogEntry) -> list[OfferedTool]:
        slot = await self._ready(entry)
        return list(slot.tools.values())

    async def call(self, entry: McpCatalogEntry, tool: str, arguments: dict[str, Any]
                   ) -> ToolAnswer:
        limits = self._limits
        deadline = trio.current_time() + limits.call_timeout_s
        with trio.move_on_at(deadline) as starting:
            slot = await self._ready(entry)
        if starting.cancelled_caught:
            raise CallFailed(504, "timeout", "the server did not start in time")
        if tool not in slot.tools:
            raise CallFailed(404, "not_found", f"{entry.name} offers no tool {tool!r:.80}")
        scope = trio.CancelScope(deadline=deadline)
        slot.calls.add(scope)
        try:
            with scope:
                result = await slot.session.call_tool(tool, arguments)
        except MCPError as exc:
            if slot.breach.reason or slot.reason:
                # The SDK fails calls in flight when the instance's pipes break.
                await _settled(slot)
                raise CallFailed(502, "server_failed", "the server broke the protocol "
                                 f"({slot.breach.reason or slot.reason})") from None
            return ToolAnswer(_clip(f"the server refused the call: {exc}",
                                    limits.max_result_bytes), True)
        except (ValidationError, ServerMisbehaved, trio.BrokenResourceError,
                trio.ClosedResourceError, anyio.BrokenResourceError,
                anyio.ClosedResourceError) as exc:
            slot.end(slot.breach.reason or _reason(exc))
            await _settled(slot)
            raise CallFailed(502, "server_failed", "the server broke the protocol") from None
        finally:
            slot.calls.discard(scope)
        if scope.cancelled_caught:
            if slot.ended.is_set() or slot.reason or slot.breach.reason:
                await _settled(slot)
                raise CallFailed(502, "server_failed",
                                 f"the server stopped ({slot.reason or 'ended'})")
            slot.end("timeout")
            await _settled(slot)
            raise CallFailed(504, "timeout",
                             f"no answer within {limits.call_timeout_s:g}s; the server "
                             "was stopped")
        return ToolAnswer(render_content(result, limits.max_result_bytes),
                          bool(result.is_error))

    async def _ready(self, entry: McpCatalogEntry) -> _Slot:
        key = instance_key(self._session_id, entry.name)
        slot = self._slots.get(key)
        if slot is None or slot.ended.is_set():
            slot = _Slot(entry)
            self._slots[key] = slot
            self._nursery.start_soon(self._run, slot)
        with trio.move_on_after(self._limits.start_timeout_s):
            await slot.ready.wait()
        if slot.session is None:
            if not slot.ready.is_set():
                slot.end("start_timeout")
            await _settled(slot)
            raise CallFailed(502, "server_failed",
                             f"{entry.name} could not be started ({slot.reason or 'timeout'})")
        return slot

    async def _run(self, slot: _Slot) -> None:
        entry = slot.entry
        place = self._place(entry)
        started = False
        try:
            with slot.scope:
                await trio.to_thread.run_sync(_make_dir, place.workdir)
                async with (
                    self._launcher.open_server(entry.server, place) as pipes,
                    open_client_session(
                        pipes, max_message_bytes=self._limits.max_message_bytes,
                        breach=slot.breach) as session,
                ):
                    await self._list(slot, session)
                    slot.session = session
                    started = True
                    slot.ready.set()
                    self._report(ServerReport(entry.name, "started", "", len(slot.tools),
                                              slot.refused_tools))
                    await trio.sleep_forever()
        except Exception as exc:
            slot.reason = slot.reason or slot.breach.reason or _reason(exc)
            logger.warning("mcp: server %s of session %s ended (%s)", entry.name,
                           self._session_id, slot.reason)
        finally:
            slot.session = None
            for scope in list(slot.calls):
                scope.cancel()
            slot.ended.set()
            slot.ready.set()
            self._report(ServerReport(entry.name, "stopped" if started else "failed",
                                      slot.reason or "session_stopped", len(slot.tools),
                                      slot.refused_tools))

    def _place(self, entry: McpCatalogEntry) -> ServerPlace:
        return ServerPlace(
            session_id=self._session_id, group=self._group,
            workdir=self._root / entry.name,
            session_workspace=self._workspace if entry.server.session_workspace else None,
            egress_socket=None)

    async def _list(self, slot: _Slot, session: Any) -> None:
        """Read the server's tools once, keeping those the host may offer."""
        limits = self._limits
        cursor: str | None = None
        listed: list[mcp_types.Tool] = []
        for _page in range(_MAX_LIST_PAGES):
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            with trio.fail_after(limits.start_timeout_s):
                result = await session.list_tools(params=params)
            listed.extend(result.tools)
            cursor = result.next_cursor
            if not cursor or len(listed) > limits.max_tools_per_server:
                break
        for tool in listed:
            offered = self._offer(slot.entry, tool)
            if offered is None or offered.tool in slot.tools or (
                    len(slot.tools) >= limits.max_tools_per_server):
                slot.refused_tools += 1
                continue
            slot.tools[offered.tool] = offered

    def _offer(self, entry: McpCatalogEntry, tool: mcp_types.Tool) -> OfferedTool | None:
        limits = self._limits
        if tool_name_problem(entry.name, tool.name):
            return None
        if entry.tools is not None and tool.name not in entry.tools:
            return None
        schema = tool.input_schema
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return None
        if len(json.dumps(schema)) > limits.max_schema_bytes:
            return None
        description = (tool.description or "")[:limits.max_description_chars]
        return OfferedTool(entry.name, tool.name, description, schema)


def render_content(result: mcp_types.CallToolResult, max_bytes: int) -> str:
    """A tool result as the text the model reads: text blocks as they are, any other
    block named by its kind (the agent reads text only)."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} omitted]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content)[:max_bytes + 1])
    return _clip("\n".join(parts), max_bytes)


def _clip(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore") + "\n[... cut by the host]"


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ServerMisbehaved):
        return exc.reason
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, ValidationError):
        return "malformed"
    if isinstance(exc, FileNotFoundError):
        return "command_not_found"
    return type(exc).__name__


async def _settled(slot: _Slot) -> None:
    """Wait for a failed instance to be gone (its teardown is bounded by the launcher's
    grace period), so the answer goes out after it and the next call starts afresh."""
    with trio.move_on_after(_SETTLE_S):
        await slot.ended.wait()


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
