"""``ironctl owners chat-approvals``: let an owner decide changes from a direct chat.

Off by default, per owner. An owner with it on can send ``/pending``, ``/show``,
``/approve`` and ``/reject`` to the bot in a direct chat; every decision is audited with
the chat it came from. A chat account is a weaker credential than an API token: read
docs/threat-model.md before turning it on. Only an owner token may turn it on or off,
and only on a channel whose platform authenticates the sender (docs/channels.md).
"""

from __future__ import annotations

from .client import OK
from .context import Ctx
from .output import Column, when

ROUTE = "/v1/chat-approvals"

COLUMNS: list[Column] = [
    ("OWNER", lambda r: r.get("user_id")),
    ("STILL OWNER", lambda r: "yes" if r.get("owner") else "no (opt-in ignored)"),
    ("ENABLED BY", lambda r: r.get("enabled_by")),
    ("ENABLED", lambda r: when(r.get("enabled_at"))),
]


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get(ROUTE)
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("approvers", [])), COLUMNS,
                          empty="(chat approvals are off for every owner)")
    return OK


async def cmd_enable(ctx: Ctx) -> int:
    return await _set(ctx, True)


async def cmd_disable(ctx: Ctx) -> int:
    return await _set(ctx, False)


async def _set(ctx: Ctx, enabled: bool) -> int:
    result = await ctx.api.post(ROUTE, {"user_id": ctx.args.user, "enabled": enabled})
    if ctx.json_mode:
        ctx.console.json(result)
        return OK
    state = "on" if enabled else "off"
    if result.get("changed"):
        ctx.console.line(f"chat approvals are now {state} for {result.get('user_id')}")
    else:
        ctx.console.line(f"chat approvals were already {state} for {result.get('user_id')}")
    if enabled:
        ctx.console.note("they may now decide changes from a direct chat with the bot "
                         "(/pending, /show, /approve, /reject); see docs/threat-model.md")
    return OK
