"""``ironctl tasks``: every session's scheduled tasks; pause, resume or cancel one.

Listing needs any token; steering needs an owner or admin token, and each change is
audited with who made it. A cancelled task is gone for good (its agent may schedule a
new one); a paused one keeps its place and, when resumed, fires a slot it missed once.
"""

from __future__ import annotations

from urllib.parse import quote

from .client import OK
from .context import Ctx
from .output import Column, when

ROUTE = "/v1/tasks"
STATUSES = ("active", "paused", "cancelled", "done")

COLUMNS: list[Column] = [
    ("TASK", lambda r: r.get("id")),
    ("SESSION", lambda r: r.get("session_id")),
    ("GROUP", lambda r: r.get("agent_group_id")),
    ("STATUS", lambda r: r.get("status")),
    ("NEXT RUN", lambda r: when(r.get("next_run_at")) or "-"),
    ("REPEATS", lambda r: r.get("recurrence") or "once"),
    ("PROMPT", lambda r: r.get("prompt")),
]


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get(ROUTE, status=ctx.args.status, session_id=ctx.args.session,
                              limit=ctx.args.limit)
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("tasks", [])), COLUMNS,
                          empty="(no scheduled task)")
    return OK


async def _steer(ctx: Ctx, verb: str, done: str) -> int:
    result = await ctx.api.post(f"{ROUTE}/{quote(ctx.args.task, safe='')}/{verb}", {})
    if ctx.json_mode:
        ctx.console.json(result)
        return OK
    task = result.get("task") or {}
    if result.get("changed"):
        ctx.console.line(f"task {task.get('id')} {done}")
    else:
        ctx.console.line(f"task {task.get('id')} was already {task.get('status')}")
    return OK


async def cmd_pause(ctx: Ctx) -> int:
    return await _steer(ctx, "pause", "paused; it fires no more until resumed")


async def cmd_resume(ctx: Ctx) -> int:
    return await _steer(ctx, "resume", "resumed")


async def cmd_cancel(ctx: Ctx) -> int:
    return await _steer(ctx, "cancel", "cancelled, for good")
