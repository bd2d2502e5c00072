"""``ironctl mcp``: the MCP servers the operator's catalogue offers, and who holds them.

Read-only: a group gets a server through an ``mcp_access`` change (``ironctl change
submit --kind mcp_access``), decided at the gateway like every other change.
"""

from __future__ import annotations

from typing import Any

from .client import OK, path
from .context import Ctx
from .output import Column, cell

COLUMNS: list[Column] = [
    ("SERVER", lambda s: s.get("name")),
    ("COMMAND", lambda s: " ".join([s.get("command") or "", *(s.get("args") or [])])),
    ("TOOLS", lambda s: _tools(s.get("tools"))),
    ("EGRESS", lambda s: ",".join(s.get("egress") or []) or "-"),
    ("GROUPS", lambda s: ",".join(g.get("agent_group_id", "?")
                                  for g in s.get("grants") or []) or "-"),
]


def _tools(tools: Any) -> str:
    if tools is None or tools == "*":
        return "*"
    return ",".join(tools) or "-"


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/mcp/servers")
    if ctx.json_mode:
        ctx.console.json(found)
        return OK
    if not found.get("enabled", True):
        ctx.console.note("MCP is disabled in this control plane's configuration")
    ctx.console.table(list(found.get("servers", [])), COLUMNS,
                      empty="(no MCP servers in the catalogue)")
    return OK


async def cmd_show(ctx: Ctx) -> int:
    server = await ctx.api.get(path("/v1/mcp/servers", ctx.args.name))
    if ctx.json_mode:
        ctx.console.json(server)
        return OK
    out = ctx.console
    out.line(f"{'server':<18} {cell(server.get('name'), 200)}")
    out.line(f"{'command':<18} {cell(COLUMNS[1][1](server), 400)}")
    out.line(f"{'tools offered':<18} {_tools(server.get('tools'))}")
    out.line(f"{'egress':<18} {COLUMNS[3][1](server)}")
    out.line(f"{'session workspace':<18} "
             f"{'read-only' if server.get('session_workspace') else 'no'}")
    grants = server.get("grants") or []
    out.line("\ngranted to:" if grants else "\ngranted to no agent group")
    for grant in grants:
        out.line(f"  {cell(grant.get('agent_group_id'), 80)}: {_tools(grant.get('tools'))}")
    return OK
