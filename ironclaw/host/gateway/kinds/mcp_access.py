"""``mcp_access``: ``{"servers": {server: [tool, ...]}}``, the agent group's whole grant
of MCP servers and tools, each declared in the host's catalog.

Refused while the host runs no MCP servers: nothing would read the grant, and a human
must never approve something that has no effect. The grammar, verifier and applier
below are what the grant is once a broker enforces it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue

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

REFUSED = "the host runs no MCP servers, so an MCP grant would have no effect"


def parse_mcp_access(value: JSONValue) -> dict[str, tuple[str, ...]]:
    servers = expect_object(value, "mcp_access", ("servers",), ("servers",))["servers"]
    if not isinstance(servers, dict) or len(servers) > MAX_SERVERS:
        raise PayloadError(f"mcp_access.servers is an object of at most {MAX_SERVERS} servers")
    grant = {}
    for server, tools in servers.items():
        expect_ident(server, "MCP server", MCP_NAME)
        items = expect_list(tools, f"tools of {server}", MAX_TOOLS, min_items=1)
        grant[server] = unique([expect_ident(t, "MCP tool", MCP_NAME) for t in items], server)
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
                return f"no MCP server {server!r:.60} in the catalog"
            undeclared = [t for t in tools if t not in self._catalog[server]]
            if undeclared:
                return f"{server} declares no tool {undeclared[0]!r:.60}"
        return None


def apply(job: ApplyJob) -> int:
    parse_mcp_access(job.after)
    g.set_grant(job.conn, job.group, g.MCP_ACCESS, job.after, job.change.id, job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.MCP_ACCESS, parse=parse_mcp_access, read_before=read_before, apply=apply,
    verifiers=(McpAccessVerifier,), auto_approvable=True, respawns=True, refused=REFUSED)
