"""The operator's MCP catalogue and the broker's limits: the ``[mcp]`` config table.

::

    [mcp.limits]
    call_timeout_s = 30

    [[mcp.servers]]
    name = "time"
    command = "mcp-server-time"
    args = ["--local-timezone", "UTC"]
    tools = ["get_current_time", "convert_time"]   # optional: what may ever be granted
    egress = []                                    # hosts it may reach; none by default
    session_workspace = false                      # the session's workspace, read-only
    [mcp.servers.image]                            # what its sandbox image holds
    python = ["mcp-server-time==2026.10.19"]

The catalogue only says what *can* be granted. Which servers and tools a group reaches
is its ``mcp_access`` grant, written only by an approved change; a catalogue entry that
is gone makes a grant naming it inert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ironclaw.contract.mcp import part_problem, tool_name_problem
from ironclaw.host.gateway.kinds.egress import host_problem

from .launch import McpServerEntry

__all__ = ["McpCatalogEntry", "McpConfig", "McpLimits"]

_positive = attrs.validators.gt(0)
_positive_s = attrs.validators.gt(0.0)
MAX_SERVERS = 64
MAX_ARGS = 64
MAX_ARG_BYTES = 4096
MAX_TOOLS = 256


@attrs.frozen
class McpLimits:
    """Caps on what one session may make the broker and its servers do."""

    # One tool call, start of the server (when it is the first) included.
    call_timeout_s: float = attrs.field(default=30.0, validator=_positive_s)
    # Starting a server and its MCP handshake.
    start_timeout_s: float = attrs.field(default=30.0, validator=_positive_s)
    # Tool calls per session, for the session's whole life.
    max_calls_per_session: int = attrs.field(default=1000, validator=_positive)
    # A call's JSON body from the agent, and the result text handed back.
    max_request_bytes: int = attrs.field(default=256 * 1024, validator=_positive)
    max_result_bytes: int = attrs.field(default=256 * 1024, validator=_positive)
    # One JSON-RPC line from a server; a longer one ends that server instance.
    max_message_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    # What tools/list may bring: tools per server, and one tool's schema as JSON.
    max_tools_per_server: int = attrs.field(default=64, validator=_positive)
    max_schema_bytes: int = attrs.field(default=16 * 1024, validator=_positive)
    max_description_chars: int = attrs.field(default=2000, validator=_positive)
    # Connections a session may hold open to mcp.sock, and calls running at once.
    max_connections_per_session: int = attrs.field(default=4, validator=_positive)
    max_header_bytes: int = attrs.field(default=16 * 1024, validator=_positive)
    idle_timeout_s: float = attrs.field(default=60.0, validator=_positive_s)


@attrs.frozen
class McpCatalogEntry:
    """A server the host offers, and the tools it may ever grant (None: any tool the
    server lists whose name passes the host's rule)."""

    server: McpServerEntry
    tools: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return self.server.name


def _entries(value: Any) -> tuple[McpCatalogEntry, ...]:
    entries = tuple(value)
    names = [e.name for e in entries]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ValueError(f"mcp.servers: {duplicate!r} is named twice")
    return entries


@attrs.frozen
class McpConfig:
    # False: no broker runs and no session gets mcp.sock, whatever its grants say.
    enabled: bool = True
    servers: tuple[McpCatalogEntry, ...] = attrs.field(default=(), converter=_entries)
    limits: McpLimits = attrs.Factory(McpLimits)

    def entry(self, name: str) -> McpCatalogEntry | None:
        return next((e for e in self.servers if e.name == name), None)

    def gateway_catalog(self) -> dict[str, frozenset[str] | None]:
        """What the gateway's ``mcp_access`` verifier checks a grant against."""
        return {e.name: e.tools for e in self.servers}

    @classmethod
    def from_table(cls, table: object) -> McpConfig:
        """From the config file's ``[mcp]`` table. Unknown keys and wrong types are
        errors, never ignored."""
        top = _table(table, "mcp", ("enabled", "servers", "limits"))
        values: dict[str, Any] = {}
        if "enabled" in top:
            values["enabled"] = _bool(top["enabled"], "mcp.enabled")
        if "limits" in top:
            values["limits"] = _limits(top["limits"])
        servers = top.get("servers", [])
        if not isinstance(servers, list) or len(servers) > MAX_SERVERS:
            raise ValueError(f"mcp.servers is a list of at most {MAX_SERVERS} tables "
                             "([[mcp.servers]])")
        values["servers"] = [_server(item, i) for i, item in enumerate(servers)]
        return cls(**values)


def _server(value: object, index: int) -> McpCatalogEntry:
    where = f"mcp.servers[{index}]"
    item = _table(value, where, ("name", "command", "args", "egress", "session_workspace",
                                 "image", "tools"))
    name = item.get("name")
    if not isinstance(name, str):
        raise ValueError(f"{where}: name is required, a string")
    where = f"mcp.servers[{index}] ({name[:40]!r})"
    problem = part_problem(name, "the name")
    if problem:
        raise ValueError(f"{where}: {problem}")
    command = item.get("command")
    if not isinstance(command, str) or not command.strip() or "\x00" in command:
        raise ValueError(f"{where}: command is required, a non-empty string")
    args = _strings(item.get("args", []), f"{where}.args", MAX_ARGS)
    if any(len(a.encode()) > MAX_ARG_BYTES or "\x00" in a for a in args):
        raise ValueError(f"{where}.args: each argument is at most {MAX_ARG_BYTES} bytes, "
                         "without NUL")
    egress = _strings(item.get("egress", []), f"{where}.egress", 64)
    bad_host = next((p for p in map(host_problem, egress) if p), None)
    if bad_host:
        raise ValueError(f"{where}.egress: {bad_host}")
    tools = None
    if "tools" in item:
        tools = frozenset(_strings(item["tools"], f"{where}.tools", MAX_TOOLS))
        bad_tool = next((p for t in sorted(tools) if (p := tool_name_problem(name, t))), None)
        if bad_tool:
            raise ValueError(f"{where}.tools: {bad_tool}")
    image = _table(item.get("image", {}), f"{where}.image", None)
    server = McpServerEntry(
        name=name, command=command, args=tuple(args), egress=tuple(egress),
        session_workspace=_bool(item.get("session_workspace", False),
                                f"{where}.session_workspace"),
        image=image)
    return McpCatalogEntry(server, tools)


def _table(value: object, name: str, known: tuple[str, ...] | None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a table")
    if known is not None:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(known)}")
    return dict(value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _strings(value: object, name: str, limit: int) -> list[str]:
    if (not isinstance(value, list) or len(value) > limit
            or not all(isinstance(v, str) for v in value)):
        raise ValueError(f"{name} must be a list of at most {limit} strings")
    return value


def _limits(value: object) -> McpLimits:
    fields = {f.name: f for f in attrs.fields(McpLimits)}
    table = _table(value, "mcp.limits", tuple(fields))
    out: dict[str, Any] = {}
    for key, item in table.items():
        wanted = fields[key].type
        if isinstance(item, bool) or not isinstance(item, int | float) or (
                wanted in (int, "int") and not isinstance(item, int)):
            raise ValueError(f"mcp.limits.{key} must be a {wanted} number")
        out[key] = item
    try:
        return McpLimits(**out)
    except ValueError as exc:
        raise ValueError(f"mcp.limits: {exc}") from None
