"""Read-mostly views: registry resources, sessions, questions (and answering them),
access requests."""

from __future__ import annotations

from typing import Any

from .client import OK, UsageError, path
from .context import Ctx, read_text_arg
from .output import Column, cell, when
from .sessions import ROTATE_KEY, cmd_delete, cmd_rotate_key

REGISTRY: dict[str, tuple[str, str, list[Column]]] = {
    "agent-groups": ("/v1/registry/agent-groups", "agent_groups", [
        ("ID", lambda r: r.get("id")), ("NAME", lambda r: r.get("name")),
        ("FOLDER", lambda r: r.get("folder")), ("PROVIDER", lambda r: r.get("provider")),
        ("MODEL", lambda r: r.get("model")),
        ("TOOLS", lambda r: ",".join(r.get("enabled_tools") or []) or "-")]),
    "messaging-groups": ("/v1/registry/messaging-groups", "messaging_groups", [
        ("ID", lambda r: r.get("id")), ("CHANNEL", lambda r: r.get("channel")),
        ("INSTANCE", lambda r: r.get("instance")),
        ("PLATFORM ID", lambda r: r.get("platform_id")), ("NAME", lambda r: r.get("name")),
        ("UNKNOWN SENDERS", lambda r: r.get("unknown_sender_policy"))]),
    "wirings": ("/v1/registry/wirings", "wirings", [
        ("ID", lambda r: r.get("id")),
        ("MESSAGING GROUP", lambda r: r.get("messaging_group_id")),
        ("AGENT GROUP", lambda r: r.get("agent_group_id")),
        ("ENGAGE", lambda r: r.get("engage_mode")), ("PATTERN", lambda r: r.get("pattern")),
        ("SENDERS", lambda r: r.get("sender_scope")),
        ("SESSIONS", lambda r: r.get("session_mode")),
        ("PRIORITY", lambda r: r.get("priority"))]),
}

DESTINATION_COLUMNS: list[Column] = [
    ("NAME", lambda r: r.get("name")), ("TYPE", lambda r: r.get("type")),
    ("CHANNEL", lambda r: r.get("channel")), ("PLATFORM ID", lambda r: r.get("platform_id")),
    ("TARGET", lambda r: r.get("target_agent_group_id")),
]

SESSION_COLUMNS: list[Column] = [
    ("ID", lambda s: s.get("id")), ("AGENT GROUP", lambda s: s.get("agent_group_id")),
    ("MESSAGING GROUP", lambda s: s.get("messaging_group_id")),
    ("THREAD", lambda s: s.get("thread_id")), ("MODE", lambda s: s.get("mode")),
    ("STATUS", lambda s: s.get("status")), ("SANDBOX", lambda s: s.get("container_status")),
    ("LIVE", lambda s: s.get("live")), ("LAST ACTIVE", lambda s: when(s.get("last_active"))),
]

QUESTION_COLUMNS: list[Column] = [
    ("ID", lambda q: q.get("id")), ("SESSION", lambda q: q.get("session_id")),
    ("ASKED", lambda q: when(q.get("asked_at"))), ("QUESTION", lambda q: q.get("question")),
    ("OPTIONS", lambda q: " | ".join(q.get("options") or []) or "-"),
]

ACCESS_COLUMNS: list[Column] = [
    ("ID", lambda r: r.get("id")), ("USER", lambda r: r.get("user_id")),
    ("MESSAGING GROUP", lambda r: r.get("messaging_group_id")),
    ("STATUS", lambda r: r.get("status")), ("REQUESTED", lambda r: when(r.get("requested_at"))),
    ("DECIDED BY", lambda r: r.get("decided_by")), ("CHANGE", lambda r: r.get("change_id")),
]


def _listing(ctx: Ctx, found: Any, key: str, columns: list[Column], empty: str) -> int:
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get(key, [])), columns, empty=empty)
    return OK


def _record(ctx: Ctx, found: dict[str, Any]) -> int:
    if ctx.json_mode:
        ctx.console.json(found)
        return OK
    width = max((len(k) for k in found), default=0)
    for key, value in found.items():
        shown = when(value) if key.endswith("_at") or key == "last_active" else value
        ctx.console.line(f"{key.ljust(width)}  {cell(shown, 400)}")
    return OK


async def cmd_registry(ctx: Ctx) -> int:
    if ctx.args.resource == "destinations":
        if not ctx.args.group:
            raise UsageError("registry destinations needs an agent group id")
        found = await ctx.api.get(path("/v1/registry/agent-groups", ctx.args.group,
                                       "destinations"))
        return _listing(ctx, found, "destinations", DESTINATION_COLUMNS, "(no destinations)")
    url, key, columns = REGISTRY[ctx.args.resource]
    found = await ctx.api.get(url)
    return _listing(ctx, found, key, columns, f"(no {ctx.args.resource})")


async def cmd_sessions(ctx: Ctx) -> int:
    if ctx.args.id == ROTATE_KEY:
        return await cmd_rotate_key(ctx)
    if ctx.args.target is not None:
        raise UsageError(f"one session id at a time (or: ironctl sessions {ROTATE_KEY} ID)")
    if ctx.args.delete or ctx.args.workspace:
        if not ctx.args.delete:
            raise UsageError("--workspace goes with --delete")
        return await cmd_delete(ctx)
    if ctx.args.id:
        return _record(ctx, await ctx.api.get(path("/v1/sessions", ctx.args.id)))
    found = await ctx.api.get("/v1/sessions")
    if ctx.args.live:
        found = {"sessions": [s for s in found.get("sessions", []) if s.get("live")]}
    return _listing(ctx, found, "sessions", SESSION_COLUMNS, "(no sessions)")


async def cmd_questions(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/questions", session_id=ctx.args.session,
                              limit=ctx.args.limit)
    return _listing(ctx, found, "questions", QUESTION_COLUMNS, "(no pending questions)")


async def cmd_question_show(ctx: Ctx) -> int:
    return _record(ctx, await ctx.api.get(path("/v1/questions", ctx.args.id)))


async def cmd_question_answer(ctx: Ctx) -> int:
    text = read_text_arg(ctx.args.text, ctx.stdin, what="the answer")
    answered = await ctx.api.post(path("/v1/questions", ctx.args.id, "answer"),
                                  {"answer": text})
    if ctx.json_mode:
        ctx.console.json(answered)
    else:
        ctx.console.line(f"question {answered.get('id')} answered by "
                         f"{answered.get('answered_by')}: {cell(answered.get('answer'))}")
    return OK


async def cmd_access(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/access-requests", status=ctx.args.status)
    code = _listing(ctx, found, "access_requests", ACCESS_COLUMNS, "(no access requests)")
    if not ctx.json_mode and any(r.get("status") == "pending"
                                 for r in found.get("access_requests", [])):
        ctx.console.note("grant or deny a request by deciding its change: "
                         "ironctl change approve|reject CHANGE")
    return code
