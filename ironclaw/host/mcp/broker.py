"""The MCP broker actor: one ``mcp.sock`` per granted session, the agent's only way to
an MCP server.

``McpBroker.run`` owns a nursery with one task per served session (the connections of
its socket) and the :class:`~.servers.ServerPool` of server instances, started at first
use. Sessions come and go through the mailbox (``ServeMcp`` / ``StopMcp``), like the
egress broker's; stopping a session stops the instances no other session holds.

The socket a request arrives on *is* the session. For every request the group's
``mcp_access`` grant is read fresh (no cache: a narrowed grant bites at the next call)
and held to the operator's catalogue; a server or tool outside either does not exist
for the agent. Per call, in order: the body cap (413), the JSON shape (400), a name the
host would offer (404), the grant (403), the session's call budget (429), then the call
under its deadline. Every request
is reported as an :class:`~.events.McpCall` (sizes and outcome, never content).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ironclaw.contract.jsonvalue import JSONRejected, parse_json
from ironclaw.contract.mcp import (
    CALL_PATH,
    MAX_ANSWER_BYTES,
    TOOLS_PATH,
    qualified_name,
    split_name,
)
from ironclaw.host.sockets.http import (
    BadRequest,
    BodyTooLarge,
    RequestHead,
    ServerConnection,
    serve_requests,
)
from ironclaw.host.sockets.serving import SessionMailbox, accept_connections, open_session_socket
from ironclaw.runtime import DiscardEvents, EventSink

from .config import McpCatalogEntry, McpConfig
from .events import McpCall, McpServer, McpSessionFailed
from .launch import McpServerLauncher, ServerPlace
from .mailbox import McpMsg, McpRoute, ServeMcp, StopMcp
from .servers import CallFailed, OfferedTool, ServerPool, ServerReport, User

__all__ = ["McpBroker", "McpGrants"]

logger = logging.getLogger(__name__)

_JSON = ("content-type", "application/json")
Grant = Mapping[str, "tuple[str, ...] | None"]
# A granted server: its catalogue entry and its tool allowlist (None: every tool).
_Granted = tuple[McpCatalogEntry, "tuple[str, ...] | None"]


class McpGrants(Protocol):
    """Where a group's grant is read (the gateway's ``Grants`` in production)."""

    async def mcp_access(self, agent_group_id: str) -> dict[str, tuple[str, ...] | None]: ...


@attrs.define(eq=False)
class _Session:
    route: McpRoute
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)
    connections: int = 0
    calls: int = 0

    @property
    def user(self) -> User:
        route = self.route
        return User(session_id=route.session_id, group=route.agent_group_id,
                    servers_dir=route.servers_dir, group_servers_dir=route.group_servers_dir,
                    workspace=route.workspace)


@attrs.define
class _Tally:
    operation: str = "other"
    server: str = ""
    tool: str = ""
    status: int = 200
    outcome: str = "ok"
    request_bytes: int = 0
    response_bytes: int = 0


class McpBroker:
    """Start with ``nursery.start(broker.run)``; single use."""

    def __init__(self, grants: McpGrants, launcher: McpServerLauncher, *,
                 config: McpConfig | None = None, events: EventSink | None = None,
                 mailbox_size: int = 64) -> None:
        self._grants = grants
        self._launcher = launcher
        self._config = McpConfig() if config is None else config
        self._events: EventSink = DiscardEvents() if events is None else events
        self._sessions: dict[str, _Session] = {}
        self._pool: ServerPool | None = None
        self._mailbox = SessionMailbox(mailbox_size, stop_type=StopMcp,
                                       what="the MCP broker")
        self._ran = False

    @property
    def mailbox(self) -> trio.MemorySendChannel[McpMsg]:
        return self._mailbox.sender

    @property
    def sessions(self) -> frozenset[str]:
        return frozenset(self._sessions)

    async def granted(self, agent_group_id: str) -> bool:
        """Whether the group is granted a server the catalogue offers (a session gets
        ``mcp.sock``, and its agent the MCP tools, only then)."""
        return bool(self._usable(await self._grants.mcp_access(agent_group_id)))

    async def serve_session(self, route: McpRoute) -> Path:
        msg = ServeMcp(route)
        await self._mailbox.send(msg)
        return await msg.reply.wait()

    async def stop_session(self, session_id: str) -> None:
        """Stop serving a session: its servers stop, its socket is removed."""
        msg = StopMcp(session_id)
        await self._mailbox.send(msg)
        await msg.reply.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self._ran:
            raise RuntimeError("McpBroker.run is single use")
        self._ran = True
        try:
            async with trio.open_nursery() as nursery:
                self._pool = ServerPool(launcher=self._launcher, limits=self._config.limits,
                                        nursery=nursery, report=self._server_report)
                task_status.started()
                await self._mailbox.serve(
                    nursery, self._sessions,
                    lambda route: nursery.start(self._serve_session, route))
        finally:
            self._mailbox.close()

    @property
    def _servers(self) -> ServerPool:
        assert self._pool is not None, "the broker is not running"
        return self._pool

    def _usable(self, grant: Grant) -> dict[str, McpCatalogEntry]:
        if not self._config.enabled:
            return {}
        entries = {name: self._config.entry(name) for name in grant}
        return {name: entry for name, entry in entries.items() if entry is not None}

    async def _serve_session(self, route: McpRoute, *,
                             task_status: trio.TaskStatus[None]) -> None:
        limits = self._config.limits
        session = _Session(route)
        started = False
        async with open_session_socket(session, self._sessions) as listener:
            try:
                with session.scope:
                    async with trio.open_nursery() as connections:
                        task_status.started()
                        started = True
                        await accept_connections(
                            listener, session,
                            max_connections=limits.max_connections_per_session,
                            connections=connections,
                            handle=functools.partial(self._connection, session))
            except Exception as exc:
                if not started:
                    raise
                logger.error("mcp broker: session %s stopped serving (%s)",
                             route.session_id, _error_name(exc))
                self._publish(McpSessionFailed(route.session_id, _error_name(exc)))
            finally:
                # Before the socket goes: a stop that returns has seen its servers go.
                with trio.CancelScope(shield=True):
                    await self._servers.release(route.session_id)

    async def _connection(self, session: _Session, stream: trio.SocketStream) -> None:
        limits = self._config.limits
        try:
            await serve_requests(
                stream, max_header_bytes=limits.max_header_bytes,
                idle_timeout=limits.idle_timeout_s,
                respond=functools.partial(self._request, session),
                malformed=self._malformed)
        except Exception as exc:
            logger.warning("mcp broker: connection for session %s failed (%s)",
                           session.route.session_id, type(exc).__name__)
        finally:
            session.connections -= 1
            await stream.aclose()

    async def _malformed(self, conn: ServerConnection, exc: BadRequest) -> None:
        with trio.move_on_after(5):
            await self._refuse(conn, _Tally(), exc.status, "bad_request", exc.detail,
                               close=True)

    async def _request(self, session: _Session, conn: ServerConnection,
                       head: RequestHead) -> bool:
        """Answer one request; True: the connection may serve another."""
        tally = _Tally()
        started = trio.current_time()
        try:
            if head.path == TOOLS_PATH and head.method == "GET":
                tally.operation = "list"
                body = await self._list(session, tally)
            elif head.path == CALL_PATH and head.method == "POST":
                tally.operation = "call"
                body = await self._call(session, await self._read_body(conn, head, tally),
                                        tally)
            else:
                raise CallFailed(404, "not_found", f"the broker serves GET {TOOLS_PATH} "
                                 f"and POST {CALL_PATH}")
            tally.response_bytes = len(body)
            await conn.respond(200, [_JSON], body)
        except CallFailed as exc:
            await self._refuse(conn, tally, exc.status, exc.outcome, exc.detail,
                               close=tally.operation == "call" and tally.request_bytes == 0)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            tally.outcome = "client_gone"
            raise
        except trio.Cancelled:
            tally.outcome = "cancelled"
            raise
        finally:
            self._publish(McpCall(
                session_id=session.route.session_id,
                agent_group_id=session.route.agent_group_id, operation=tally.operation,
                server=tally.server, tool=tally.tool, status=tally.status,
                outcome=tally.outcome, request_bytes=tally.request_bytes,
                response_bytes=tally.response_bytes,
                duration_ms=round((trio.current_time() - started) * 1000, 3)))
        return True

    async def _read_body(self, conn: ServerConnection, head: RequestHead,
                         tally: _Tally) -> bytes:
        limit = self._config.limits.max_request_bytes
        too_large = CallFailed(413, "too_large", f"the request exceeds {limit} bytes")
        if head.content_length is not None and head.content_length > limit:
            raise too_large
        body = None
        try:
            with trio.move_on_after(self._config.limits.idle_timeout_s):
                body = await conn.read_body(limit)
        except BodyTooLarge:
            raise too_large from None
        if body is None:
            raise BadRequest(408, "the request body arrived too slowly")
        tally.request_bytes = len(body)
        return body

    async def _grant(self, session: _Session) -> dict[str, _Granted]:
        """The group's grant now, as catalogue entries with their tool allowlists."""
        try:
            grant = await self._grants.mcp_access(session.route.agent_group_id)
        except Exception as exc:
            logger.error("mcp broker: cannot read the grant of %s (%s)",
                         session.route.agent_group_id, type(exc).__name__)
            raise CallFailed(503, "unavailable", "the grant could not be read") from None
        return {name: (entry, grant[name]) for name, entry in self._usable(grant).items()}

    async def _list(self, session: _Session, tally: _Tally) -> bytes:
        servers, user = self._servers, session.user
        granted = sorted((await self._grant(session)).items())
        offered: dict[str, list[OfferedTool]] = {}

        async def list_one(entry: McpCatalogEntry) -> None:
            with contextlib.suppress(CallFailed):  # an mcp.server event says why
                offered[entry.name] = await servers.tools(user, entry)

        # At once: one slow server costs the listing its start time, not the sum.
        async with trio.open_nursery() as nursery:
            for _name, (entry, _allowed) in granted:
                nursery.start_soon(list_one, entry)
        tools = [_wire_tool(tool) for name, (_entry, allowed) in granted
                 for tool in offered.get(name, ()) if allowed is None or tool.tool in allowed]
        body = json.dumps({"tools": tools}).encode()
        while len(body) > MAX_ANSWER_BYTES and tools:
            tools.pop()
            body = json.dumps({"tools": tools}).encode()
        return body

    async def _call(self, session: _Session, body: bytes, tally: _Tally) -> bytes:
        name, arguments = _parse_call(body, self._config.limits.max_request_bytes)
        split = split_name(name)
        if split is None:
            raise CallFailed(404, "not_granted", f"no MCP tool {name[:80]!r}")
        tally.server, tally.tool = split
        entry, allowed = (await self._grant(session)).get(tally.server, (None, ()))
        if entry is None or (allowed is not None and tally.tool not in allowed):
            raise CallFailed(403, "not_granted",
                             f"{name[:80]} is not granted to this agent (any more)")
        if session.calls >= self._config.limits.max_calls_per_session:
            raise CallFailed(429, "call_budget_spent",
                             "this session has used its MCP call budget")
        session.calls += 1
        answer = await self._servers.call(session.user, entry, tally.tool, arguments)
        tally.outcome = "tool_error" if answer.is_error else "ok"
        return json.dumps({"content": answer.text, "is_error": answer.is_error}).encode()

    async def _refuse(self, conn: ServerConnection, tally: _Tally, status: int,
                      outcome: str, detail: str, *, close: bool) -> None:
        tally.status, tally.outcome = status, outcome
        if not conn.can_respond:
            raise trio.BrokenResourceError("the response had already started")
        body = json.dumps({"error": outcome, "detail": detail[:500]}).encode()
        tally.response_bytes = len(body)
        await conn.respond(status, [_JSON], body, close=close)

    def _server_report(self, place: ServerPlace, report: ServerReport) -> None:
        self._publish(McpServer(
            session_id=place.session_id, agent_group_id=place.group,
            server=report.server, state=report.state, reason=report.reason,
            tools=report.tools, refused_tools=report.refused_tools))

    def _publish(self, event: McpCall | McpServer | McpSessionFailed) -> None:
        try:
            self._events.publish(event)
        except Exception as exc:
            logger.warning("mcp broker: event sink failed (%s)", type(exc).__name__)


def _parse_call(body: bytes, max_bytes: int) -> tuple[str, dict[str, Any]]:
    try:
        value = parse_json(body, max_bytes=max_bytes)
    except JSONRejected as exc:
        raise CallFailed(400, "bad_request", f"the body is not acceptable JSON ({exc})"
                         ) from None
    if not isinstance(value, dict) or set(value) - {"name", "arguments"}:
        raise CallFailed(400, "bad_request", 'the body is {"name", "arguments"}')
    name, arguments = value.get("name"), value.get("arguments", {})
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise CallFailed(400, "bad_request", "name is a string, arguments an object")
    return name, arguments


def _wire_tool(tool: OfferedTool) -> dict[str, Any]:
    return {"name": qualified_name(tool.server, tool.tool), "description": tool.description,
            "input_schema": tool.input_schema}


def _error_name(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__
