"""``mcp_access``: ``{"servers": {server: [tool, ...] | "*"}}``, the agent group's whole
grant of MCP servers, each with a tool allowlist or ``"*"`` for every tool the catalogue
offers of it.

The verifier holds the grant to the operator's catalogue (``[[mcp.servers]]``): each
server must be in it, each tool a name the host would offer (``ironclaw.contract.mcp``)
and, where the entry lists its tools, one of them. The MCP broker reads the grant fresh
for every listing and call, so a narrowed grant bites at the next call, and an empty
one (``{"servers": {}}``) takes ``mcp.sock`` away at the respawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.contract.mcp import tool_name_problem

from .. import grants as g
from ..payloads import (
    MAX_TOOLS,
    MCP_NAME,
    PayloadError,
    expect_ident,
    expect_list,
    expect_object,
    unique,
)
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, KindVerifier

if TYPE_CHECKING:
    from ..config import GatewayConfig

MAX_SERVERS = 64
ALL_TOOLS = "*"


def parse_mcp_access(value: JSONValue) -> dict[str, tuple[str, ...] | None]:
    """Server -> its tool allowlist, or None for every tool the catalogue offers."""
    servers = expect_object(value, "mcp_access", ("servers",), ("servers",))["servers"]
    if not isinstance(servers, dict) or len(servers) > MAX_SERVERS:
        raise PayloadError(f"mcp_access.servers is an object of at most {MAX_SERVERS} servers")
    grant: dict[str, tuple[str, ...] | None] = {}
    for server, tools in servers.items():
        expect_ident(server, "MCP server", MCP_NAME)
        if tools == ALL_TOOLS:
            grant[server] = None
            continue
        items = expect_list(tools, f"tools of {server}", MAX_TOOLS, min_items=1)
        grant[server] = tuple(
            unique([expect_ident(t, "MCP tool", MCP_NAME) for t in items], server))
    return grant


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_mcp_access(after)
    return g.get_grant(conn, group, g.MCP_ACCESS) or {"servers": {}}


class McpAccessVerifier(KindVerifier):
    name = "mcp-access"
    kinds = frozenset({ChangeKind.MCP_ACCESS})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._catalog = config.mcp_catalog

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        for server, tools in parse_mcp_access(after).items():
            if server not in self._catalog:
                return f"no MCP server {server!r:.60} in the host's catalogue"
            offered = self._catalog[server]
            for tool in tools or ():
                problem = tool_name_problem(server, tool)
                if problem:
                    return problem
                if offered is not None and tool not in offered:
                    return f"the catalogue offers no tool {tool!r:.60} of {server}"
        return None


def apply(job: ApplyJob) -> int:
    parse_mcp_access(job.after)
    g.set_grant(job.conn, job.group, g.MCP_ACCESS, job.after, job.change.id, job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.MCP_ACCESS, parse=parse_mcp_access, read_before=read_before, apply=apply,
    verifiers=(McpAccessVerifier,), respawns=True)
