"""The MCP server instances: started at first use, stopped when the last session using
them stops.

:class:`ServerPool` keeps a slot per instance. A slot runs its instance in a task of the
broker's nursery: the launcher's context manager (the server's process or sandbox), the
SDK session over its pipes, and the tool list read once at start, checked and capped. A
call waits for its slot to be ready, then runs under the call deadline; a call that
times out, and any protocol breach, ends the instance (the next use starts a fresh one),
and every call still in flight on an instance that ends is cancelled at once with the
instance's reason.

Which sessions share an instance is decided here and only here: :data:`INSTANCE_SCOPE`
(one instance per session per server, so one session's server never sees another's
calls), applied by :func:`instance_key` and :func:`instance_workdir`.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import attrs
import mcp_types
import trio
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from ironclaw.contract.mcp import tool_name_problem

from .client import Breach, ServerMisbehaved, open_client_session
from .config import McpCatalogEntry, McpLimits
from .launch import McpServerLauncher, ServerPlace

__all__ = ["INSTANCE_SCOPE", "CallFailed", "OfferedTool", "Scope", "ServerPool", "ToolAnswer",
           "User", "instance_key", "instance_workdir"]

logger = logging.getLogger(__name__)

_MAX_LIST_PAGES = 4
_SETTLE_S = 10.0


class Scope(enum.StrEnum):
    SESSION = "session"  # one instance per session per server
    GROUP = "group"  # one instance per agent group per server, shared by its sessions


INSTANCE_SCOPE = Scope.SESSION


@attrs.frozen
class User:
    """A session using the pool, and the host paths its instances may get."""

    session_id: str
    group: str
    servers_dir: Path  # the session's own directory for its instances
    group_servers_dir: Path  # the group's, for instances its sessions share
    workspace: Path  # the group's workspace


def instance_key(user: User, server: str) -> tuple[str, str]:
    """Which instance serves ``server`` to ``user``."""
    owner = user.session_id if INSTANCE_SCOPE is Scope.SESSION else f"group:{user.group}"
    return owner, server


def instance_workdir(user: User, server: str) -> Path:
    """The instance's own writable directory: the session's, or the group's."""
    shared = INSTANCE_SCOPE is Scope.GROUP
    return (user.group_servers_dir if shared else user.servers_dir) / server


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
    place: ServerPlace
    users: set[str] = attrs.Factory(set)  # the sessions holding it
    ready: trio.Event = attrs.Factory(trio.Event)
    ended: trio.Event = attrs.Factory(trio.Event)
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    session: Any = None  # the SDK ClientSession while the instance runs
    tools: dict[str, OfferedTool] = attrs.Factory(dict)
    refused_tools: int = 0
    reason: str = ""  # why it ended
    breach: Breach = attrs.Factory(Breach)
    calls: set[trio.CancelScope] = attrs.Factory(set)

    @property
    def broken(self) -> bool:
        """The instance ended, or is ending, for a reason of its own."""
        return bool(self.reason or self.breach.reason) or self.ended.is_set()

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


class ServerPool:
    """Every instance the broker runs, in the broker's nursery. ``report`` hears when one
    starts, fails to start, or stops."""

    def __init__(self, *, launcher: McpServerLauncher, limits: McpLimits,
                 nursery: trio.Nursery,
                 report: Callable[[ServerPlace, ServerReport], None]) -> None:
        self._launcher = launcher
        self._limits = limits
        self._nursery = nursery
        self._report = report
        self._slots: dict[tuple[str, str], _Slot] = {}

    async def release(self, session_id: str) -> None:
        """The session stopped: end the instances no other session holds, and return
        once they are gone."""
        ended = []
        for key, slot in list(self._slots.items()):
            slot.users.discard(session_id)
            if not slot.users:
                del self._slots[key]
                slot.end("session_stopped")
                ended.append(slot)
        for slot in ended:
            await _settled(slot)

    async def tools(self, user: User, entry: McpCatalogEntry) -> list[OfferedTool]:
        slot = await self._ready(user, entry)
        return list(slot.tools.values())

    async def call(self, user: User, entry: McpCatalogEntry, tool: str,
                   arguments: dict[str, Any]) -> ToolAnswer:
        limits = self._limits
        deadline = trio.current_time() + limits.call_timeout_s
        with trio.move_on_at(deadline) as starting:
            slot = await self._ready(user, entry)
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
            if not slot.broken:
                return ToolAnswer(_clip(f"the server refused the call: {exc}",
                                        limits.max_result_bytes), True)
            # The SDK fails the calls in flight when the instance's pipes break.
            await _fail(slot, "")
        except Exception as exc:
            # A result of the wrong shape, a broken pipe, or the SDK refusing what the
            # server sent: the instance is not to be trusted with another call.
            await _fail(slot, slot.breach.reason or _reason(exc))
        finally:
            slot.calls.discard(scope)
        if scope.cancelled_caught:
            await _fail(slot, "" if slot.broken else "timeout", limits.call_timeout_s)
        return ToolAnswer(render_content(result, limits.max_result_bytes),
                          bool(result.is_error))

    async def _ready(self, user: User, entry: McpCatalogEntry) -> _Slot:
        key = instance_key(user, entry.name)
        slot = self._slots.get(key)
        if slot is None or slot.ended.is_set():
            slot = _Slot(entry, _place(user, entry))
            self._slots[key] = slot
            self._nursery.start_soon(self._run, slot)
        slot.users.add(user.session_id)
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
        entry, place = slot.entry, slot.place
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
                    self._report(place, ServerReport(entry.name, "started", "",
                                                     len(slot.tools), slot.refused_tools))
                    await trio.sleep_forever()
        except Exception as exc:
            slot.reason = slot.reason or slot.breach.reason or _reason(exc)
            logger.warning("mcp: server %s of session %s ended (%s)", entry.name,
                           place.session_id, slot.reason)
        finally:
            slot.session = None
            for scope in list(slot.calls):
                scope.cancel()
            slot.ended.set()
            slot.ready.set()
            self._report(place, ServerReport(
                entry.name, "stopped" if started else "failed",
                slot.reason or "session_stopped", len(slot.tools), slot.refused_tools))

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


def _place(user: User, entry: McpCatalogEntry) -> ServerPlace:
    """Where the instance ``user`` starts lives (a shared one: that of the session that
    started it)."""
    return ServerPlace(
        session_id=user.session_id, group=user.group,
        workdir=instance_workdir(user, entry.name),
        session_workspace=user.workspace if entry.server.session_workspace else None,
        egress_socket=None)


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


async def _fail(slot: _Slot, reason: str, timeout_s: float = 0.0) -> NoReturn:
    """End the instance (unless it already ended) and answer the call with why, once
    it is gone: the next call then starts a fresh one."""
    if reason:
        slot.end(reason)
    await _settled(slot)
    if reason == "timeout":
        raise CallFailed(504, "timeout", f"no answer within {timeout_s:g}s; the server "
                         "was stopped")
    raise CallFailed(502, "server_failed", "the server broke the protocol "
                     f"({slot.reason or slot.breach.reason or 'ended'})")


async def _settled(slot: _Slot) -> None:
    """Wait for a failed instance to be gone (its teardown is bounded by the launcher's
    grace period), so the answer goes out after it and the next call starts afresh."""
    with trio.move_on_after(_SETTLE_S):
        await slot.ended.wait()


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
