"""``ironctl connect``: connect a chat to an agent group with one ``connect_chat`` change
(create the chat if it never wrote, wire it, grant members, set its policy), shown as
one diff and approved once, like any change."""

from __future__ import annotations

from typing import Any

from .changes import print_change, refused, submit_change
from .client import OK, UsageError, path
from .context import Ctx

ENGAGE_MODES = ("pattern", "mention", "mention-sticky")
POLICIES = ("strict", "request_approval", "public")
MAX_MEMBERS = 64


def split_target(target: str) -> tuple[str, str | None]:
    """``channel`` or ``channel:instance``."""
    channel, colon, instance = target.partition(":")
    if not channel or (colon and not instance):
        raise UsageError(f"{target!r}: the chat's channel is CHANNEL or CHANNEL:INSTANCE")
    return channel, instance or None


def connect_payload(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    channel, instance = split_target(a.channel)
    payload: dict[str, Any] = {"channel": channel, "chat": a.chat}
    if instance is not None:
        payload["instance"] = instance
    if a.engage == "pattern" and a.pattern is None:
        raise UsageError("--engage pattern needs --pattern RE")
    if a.pattern is not None and a.engage not in (None, "pattern"):
        raise UsageError(f"--pattern is for --engage pattern, not {a.engage}")
    if a.engage is not None:
        payload["engage"] = a.engage
    if a.pattern is not None:
        payload["pattern"] = a.pattern
    if a.members is not None:
        members = [m.strip() for m in a.members.split(",") if m.strip()]
        if not members:
            raise UsageError("--members names at least one member")
        if len(members) > MAX_MEMBERS:
            raise UsageError(f"--members names at most {MAX_MEMBERS}")
        payload["members"] = list(dict.fromkeys(members))
    if a.policy is not None:
        payload["unknown_sender_policy"] = a.policy
    return payload


async def cmd_connect(ctx: Ctx) -> int:
    a = ctx.args
    accepted = await submit_change(ctx.api, "connect_chat", a.agent, connect_payload(ctx),
                                   reason=a.reason, ttl=a.ttl)
    if ctx.json_mode:
        ctx.console.json(accepted)
        return await refused(ctx, accepted)
    if accepted.get("status") == "rejected":
        return await refused(ctx, accepted)
    print_change(ctx.console, await ctx.api.get(path("/v1/changes", str(accepted["id"]))))
    if accepted.get("status") == "pending":
        ctx.console.line()
        ctx.console.line(f"approve it with: ironctl change approve {accepted['id']}")
    return OK
