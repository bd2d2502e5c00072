"""``ironctl principals``: the team's API tokens (needs an owner token).

``add`` and ``rotate`` print the new token once: it is kept only as its HMAC, so it
can never be shown again. Hand it over the way you would a password. ``revoke`` is
for good: the name stays taken, so past decisions still name the right person.
"""

from __future__ import annotations

from urllib.parse import quote

from .client import OK, UsageError
from .context import Ctx
from .output import Column, when

ROUTE = "/v1/principals"
GRANTABLE_ROLES = ("admin", "approver", "viewer")

COLUMNS: list[Column] = [
    ("NAME", lambda r: r.get("name")),
    ("ROLES", lambda r: ",".join(r.get("roles") or [])),
    ("AGENT GROUPS", lambda r: ",".join(r.get("agent_groups") or []) or "(all)"),
    ("CREATED", lambda r: when(r.get("created_at"))),
    ("REVOKED", lambda r: when(r.get("revoked_at")) or "-"),
]


def parse_roles(text: str) -> list[str]:
    roles = sorted({part.strip() for part in text.split(",") if part.strip()})
    if not roles:
        raise UsageError("--roles: give one or more of admin, approver, viewer")
    unknown = [role for role in roles if role not in GRANTABLE_ROLES]
    if unknown:
        raise UsageError(f"--roles: unknown role {unknown[0]!r} (choose from admin, "
                         "approver, viewer)")
    return roles


def _path(name: str) -> str:
    return f"{ROUTE}/{quote(name, safe='')}"


async def cmd_list(ctx: Ctx) -> int:
    found = await ctx.api.get(ROUTE)
    if ctx.json_mode:
        ctx.console.json(found)
    else:
        ctx.console.table(list(found.get("principals", [])), COLUMNS,
                          empty="(no principal)")
    return OK


async def cmd_add(ctx: Ctx) -> int:
    roles = parse_roles(ctx.args.roles)
    body: dict[str, object] = {"name": ctx.args.name, "roles": roles}
    if ctx.args.agent_groups is not None:
        groups = sorted({g.strip() for g in ctx.args.agent_groups.split(",") if g.strip()})
        if not groups:
            raise UsageError("--agent-groups: give one or more agent group ids")
        body["agent_groups"] = groups
    created = await ctx.api.post(ROUTE, body)
    return _show_token(ctx, created, "added")


async def cmd_rotate(ctx: Ctx) -> int:
    rotated = await ctx.api.post(_path(ctx.args.name) + "/rotate", {})
    return _show_token(ctx, rotated, "has a new token; the old one no longer works")


async def cmd_revoke(ctx: Ctx) -> int:
    result = await ctx.api.delete(_path(ctx.args.name))
    if ctx.json_mode:
        ctx.console.json(result)
    else:
        ctx.console.line(f"principal {result.get('name')} revoked; its token no longer "
                         "works and its name stays taken")
    return OK


def _show_token(ctx: Ctx, result: dict[str, object], what: str) -> int:
    if ctx.json_mode:
        ctx.console.json(result)
        return OK
    roles, groups = result.get("roles"), result.get("agent_groups")
    shown = ",".join(roles) if isinstance(roles, list) else ""
    if isinstance(groups, list):
        shown += " for agent group(s) " + ",".join(groups)
    ctx.console.line(f"principal {result.get('name')} ({shown}) {what}")
    ctx.console.line(f"token: {result.get('token')}")
    ctx.console.note("the token is shown only this once; store it now")
    return OK
