"""``ironctl agent``: create (a gated ``create_agent`` change), templates, list, show.

``agent create`` never writes the registry: it submits a change through
``POST /v1/changes``. With ``--approve`` it then decides that change as the same
principal, so the audit log holds two acts (the submission and the decision), exactly
as if they had been done one after the other by hand.
"""

from __future__ import annotations

from typing import Any

from .changes import decide, decision_line, refused, submit_change
from .client import OK, ApiFailure, UsageError, path
from .context import Ctx, read_text_arg
from .output import Column, cell, when
from .templates import TEMPLATES, render

PERSONA_DOCS = ("identity", "soul", "instructions")

AGENT_COLUMNS: list[Column] = [
    ("ID", lambda g: g.get("id")),
    ("NAME", lambda g: g.get("name")),
    ("FOLDER", lambda g: g.get("folder")),
    ("PROVIDER", lambda g: g.get("provider")),
    ("MODEL", lambda g: g.get("model")),
    ("TOOLS", lambda g: ",".join(g.get("enabled_tools") or []) or "-"),
]


def create_payload(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    payload: dict[str, Any] = {"name": a.name, "folder": a.folder}
    if a.provider:
        payload["provider"] = a.provider
    if a.model:
        payload["model"] = a.model
    persona: dict[str, str] = {}
    if a.template:
        template = TEMPLATES.get(a.template)
        if template is None:
            raise UsageError(f"unknown template {a.template!r}; choose from "
                             f"{', '.join(sorted(TEMPLATES))}")
        persona.update(render(template, a.name))
    for doc in PERSONA_DOCS:
        value = getattr(a, doc)
        if value is not None:
            persona[doc] = read_text_arg(value, ctx.stdin, what=f"--{doc}")
    if persona:
        payload["persona"] = persona
    if a.tool:
        payload["tools"] = list(dict.fromkeys(a.tool))
    return payload


async def cmd_create(ctx: Ctx) -> int:
    a = ctx.args
    payload = create_payload(ctx)
    accepted = await submit_change(ctx.api, "create_agent", a.folder, payload,
                                   reason=a.reason, ttl=a.ttl)
    change_id = str(accepted.get("id"))
    result: dict[str, Any] = {"submitted": accepted}
    if not ctx.json_mode:
        ctx.console.line(f"submitted create_agent change {change_id} for {a.name!r} "
                         f"(folder {a.folder}): {accepted.get('status', 'pending')}")
    pending = accepted.get("status", "pending") == "pending"
    if a.approve and pending:
        try:
            decided = await decide(ctx.api, change_id, "approve", a.reason)
        except ApiFailure:
            ctx.console.note(f"the change {change_id} was submitted but not approved; it "
                             "stays pending for another approver")
            raise
        result["decided"] = decided
        if not ctx.json_mode:
            ctx.console.line(decision_line(decided, "approve"))
    elif pending and not ctx.json_mode:
        ctx.console.line(f"approve it with: ironctl change approve {change_id}")
    if ctx.json_mode:
        ctx.console.json(result)
    return await refused(ctx, accepted)


async def cmd_templates(ctx: Ctx) -> int:
    name = ctx.args.template_name
    if name is not None:
        template = TEMPLATES.get(name)
        if template is None:
            raise UsageError(f"unknown template {name!r}; choose from "
                             f"{', '.join(sorted(TEMPLATES))}")
        docs = render(template, "<name>")
        if ctx.json_mode:
            ctx.console.json({"name": name, "summary": template.summary, "persona": docs})
            return OK
        ctx.console.line(f"{name}: {template.summary}")
        for doc in PERSONA_DOCS:
            ctx.console.line(f"\n[{doc}]\n{docs[doc]}")
        return OK
    rows = [{"name": t.name, "summary": t.summary} for t in TEMPLATES.values()]
    if ctx.json_mode:
        ctx.console.json({"templates": rows})
    else:
        ctx.console.table(rows, [("TEMPLATE", lambda r: r["name"]),
                                 ("SUMMARY", lambda r: r["summary"])])
    return OK


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get("/v1/registry/agent-groups")
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("agent_groups", [])), AGENT_COLUMNS,
                          empty="(no agents)")
    return OK


async def cmd_show(ctx: Ctx) -> int:
    group = await ctx.api.get(path("/v1/registry/agent-groups", ctx.args.id))
    if ctx.json_mode:
        ctx.console.json(group)
        return OK
    out = ctx.console
    for label, key in (("agent", "id"), ("name", "name"), ("folder", "folder"),
                       ("provider", "provider"), ("model", "model")):
        out.line(f"{label:<9} {cell(group.get(key), 200)}")
    out.line(f"{'tools':<9} {', '.join(group.get('enabled_tools') or []) or '-'}")
    out.line(f"{'created':<9} {when(group.get('created_at'))}")
    out.line(f"{'updated':<9} {when(group.get('updated_at'))}")
    persona = group.get("persona") or {}
    for doc in PERSONA_DOCS:
        text = persona.get(doc) or ""
        out.line(f"\n[{doc}]")
        out.line(text.rstrip() if text.strip() else "(empty)")
    return OK
