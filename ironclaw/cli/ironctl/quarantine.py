"""``ironctl quarantine``: sessions held because their sandbox proved hostile.

A held session never starts, across restarts of the control plane, until an owner
lifts the hold. Look at its outbound directory first (docs/operations.md, "A
quarantined session"): a file that is still hostile quarantines it again at once.
"""

from __future__ import annotations

from urllib.parse import quote

from .client import OK
from .context import Ctx
from .output import Column, when

ROUTE = "/v1/quarantine"

COLUMNS: list[Column] = [
    ("SESSION", lambda r: r.get("session_id")),
    ("AGENT GROUP", lambda r: r.get("agent_group_id")),
    ("SINCE", lambda r: when(r.get("since"))),
    ("REASON", lambda r: r.get("reason")),
]


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get(ROUTE)
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("sessions", [])), COLUMNS,
                          empty="(no session is quarantined)")
    return OK


async def cmd_lift(ctx: Ctx) -> int:
    result = await ctx.api.post(f"{ROUTE}/{quote(ctx.args.session, safe='')}/lift", {})
    if ctx.json_mode:
        ctx.console.json(result)
        return OK
    ctx.console.line(f"quarantine of session {result.get('session_id')} lifted; it starts "
                     "again at its next message")
    return OK
