"""Read-only view of the MCP catalogue: the servers the operator offers
(``[[mcp.servers]]``) and, for each, the agent groups granted it and which tools.
Granting goes through ``POST /v1/changes`` (kind ``mcp_access``) like every change.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.gateway import Grants
from ironclaw.host.mcp import McpCatalogEntry

from ..context import Access, ApiContext, access
from ..errors import ApiError

Grant = dict[str, tuple[str, ...] | None]


def register(app: QuartTrio, ctx: ApiContext) -> None:
    handles = ctx.handles

    async def grants() -> list[tuple[str, Grant]]:
        reader = Grants(handles.store)
        return [(group.id, await reader.mcp_access(group.id))
                for group in await handles.registry.list_agent_groups()]

    @app.get("/v1/mcp/servers")
    @access(Access.READ)
    async def list_mcp_servers() -> dict[str, object]:
        config = handles.config.mcp
        held = await grants()
        return {"enabled": config.enabled,
                "servers": [render_server(e, held) for e in config.servers]}

    @app.get("/v1/mcp/servers/<name>")
    @access(Access.READ)
    async def show_mcp_server(name: str) -> dict[str, object]:
        entry = handles.config.mcp.entry(name)
        if entry is None:
            raise ApiError(404, f"no MCP server {name[:80]!r} in the catalogue")
        return render_server(entry, await grants())


def render_server(entry: McpCatalogEntry, grants: list[tuple[str, Grant]]
                  ) -> dict[str, object]:
    server = entry.server
    return {
        "name": server.name, "command": server.command, "args": list(server.args),
        "egress": list(server.egress), "session_workspace": server.session_workspace,
        "tools": None if entry.tools is None else sorted(entry.tools),
        "grants": [{"agent_group_id": group, "tools": _tools(grant[server.name])}
                   for group, grant in grants if server.name in grant],
    }


def _tools(allowlist: tuple[str, ...] | None) -> str | list[str]:
    return "*" if allowlist is None else list(allowlist)
