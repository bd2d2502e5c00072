"""``ironctl change``: submit, pending, history, show (with a diff), approve, reject."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ironclaw.changediff import change_diff, diff_lines

from .client import FAILED, OK, path
from .context import Ctx, read_json_arg
from .output import Column, Console, cell, when

CHANGE_COLUMNS: list[Column] = [
    ("ID", lambda c: c.get("id")),
    ("KIND", lambda c: c.get("kind")),
    ("GROUP", lambda c: c.get("agent_group")),
    ("STATUS", lambda c: c.get("status")),
    ("REQUESTED BY", lambda c: c.get("requested_by")),
    ("CREATED", lambda c: when(c.get("created_at"))),
    ("REASON", lambda c: c.get("reason")),
]


async def submit_change(api: Any, kind: str, group: str, payload: Any, *,
                        reason: str | None = None, ttl: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "agent_group": group, "payload": payload}
    if reason is not None:
        body["reason"] = reason
    if ttl is not None:
        body["ttl_seconds"] = ttl
    accepted: dict[str, Any] = await api.post("/v1/changes", body)
    return accepted


async def decide(api: Any, change_id: str, outcome: str, reason: str | None
                 ) -> dict[str, Any]:
    body: dict[str, Any] = {"outcome": outcome}
    if reason is not None:
        body["reason"] = reason
    decided: dict[str, Any] = await api.post(path("/v1/changes", change_id, "decision"), body)
    return decided


async def cmd_submit(ctx: Ctx) -> int:
    a = ctx.args
    payload = read_json_arg(a.payload, ctx.stdin, what="--payload")
    accepted = await submit_change(ctx.api, a.kind, a.group, payload, reason=a.reason,
                                   ttl=a.ttl)
    if ctx.json_mode:
        ctx.console.json(accepted)
    else:
        ctx.console.line(f"submitted {a.kind} change {accepted.get('id')} for "
                         f"{a.group} ({accepted.get('status', 'pending')})")
    return await refused(ctx, accepted)


async def refused(ctx: Ctx, accepted: Mapping[str, Any]) -> int:
    """FAILED (with the verifier's reason on stderr) when a submission was rejected
    at once, OK otherwise."""
    if accepted.get("status") != "rejected":
        return OK
    reason = "no reason given"
    try:
        change = await ctx.api.get(path("/v1/changes", str(accepted.get("id"))))
        decision = change.get("decision") or {}
        reason = f"{decision.get('decided_by')}: {decision.get('reason') or reason}"
    except Exception as exc:  # the rejection itself is the news; the detail is a bonus
        reason = f"(could not fetch the reason: {exc})"
    ctx.console.note(f"the change was rejected on submission by {reason}")
    return FAILED


async def cmd_pending(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/changes/pending", limit=ctx.args.limit)
    return show_list(ctx, found, "no pending changes")


async def cmd_history(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/changes/history", limit=ctx.args.limit,
                              status=ctx.args.status)
    return show_list(ctx, found, "no changes")


def show_list(ctx: Ctx, found: Any, empty: str) -> int:
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("changes", [])), CHANGE_COLUMNS, empty=f"({empty})")
    return OK


async def cmd_show(ctx: Ctx) -> int:
    change = await ctx.api.get(path("/v1/changes", ctx.args.id))
    if ctx.json_mode:
        ctx.console.json(change)
    else:
        print_change(ctx.console, change, full=ctx.args.full)
    return OK


def print_change(console: Console, change: Mapping[str, Any], *, full: bool = False) -> None:
    fields = [
        ("change", change.get("id")), ("kind", change.get("kind")),
        ("group", change.get("agent_group")), ("status", change.get("status")),
        ("requested by", change.get("requested_by")),
        ("created", when(change.get("created_at"))),
    ]
    if change.get("expires_at") is not None:
        fields.append(("expires", when(change.get("expires_at"))))
    if change.get("reason"):
        fields.append(("reason", change.get("reason")))
    if change.get("approvals"):
        fields.append(("approved by", ", ".join(map(str, change["approvals"]))
                       + " (waits for a second approver)"))
    decision = change.get("decision")
    if isinstance(decision, Mapping):
        text = f"{decision.get('outcome')} by {decision.get('decided_by')} at " \
               f"{when(decision.get('decided_at'))}"
        if decision.get("reason"):
            text += f" ({cell(decision.get('reason'), 200)})"
        fields.append(("decision", text))
    if change.get("applied_at") is not None:
        fields.append(("applied", when(change.get("applied_at"))))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        console.line(f"{name.ljust(width)}  {cell(value, 400)}")
    lines = diff_lines(change_diff(change.get("before"), change.get("after")), full=full)
    console.line()
    console.line("diff:" if lines else "diff: (no change)")
    for text in lines:
        console.line("  " + text)


async def cmd_approve(ctx: Ctx) -> int:
    return await _decide(ctx, "approve")


async def cmd_reject(ctx: Ctx) -> int:
    return await _decide(ctx, "reject")


async def _decide(ctx: Ctx, outcome: str) -> int:
    decided = await decide(ctx.api, ctx.args.id, outcome, ctx.args.reason)
    if ctx.json_mode:
        ctx.console.json(decided)
    else:
        ctx.console.line(decision_line(decided, outcome))
    return OK


def decision_line(decided: Mapping[str, Any], outcome: str) -> str:
    decision = decided.get("decision")
    who = decision.get("decided_by") if isinstance(decision, Mapping) else None
    verb = "approved" if outcome == "approve" else "rejected"
    if outcome == "approve" and decided.get("status") == "pending":
        return (f"change {decided.get('id')}: your approval is recorded; it needs a second, "
                "different approver (the two-person rule), so it is still pending")
    by = f" by {who}" if who else ""
    return f"change {decided.get('id')} {verb}{by}: now {decided.get('status')}"
