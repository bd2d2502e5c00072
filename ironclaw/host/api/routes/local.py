"""The local channel over HTTP: post a message, read a conversation.

A message goes to a local conversation already wired to the agent group (the demo
group's is ``demo``). This surface never creates a messaging group or a wiring: that
would change what an agent listens to without the gateway, so an unwired group is a
404 and the fix is a ``wiring`` change.

Who may speak as whom: the router makes the sender ``local:<sender>``, and access
to an agent is decided on that identity, so only owners and admins may pick any
sender; an approver posts under its own principal name; a viewer may not post. A chat
command (``/approve``...) is posted only under the poster's own name, by anyone.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.chatops import parse_command
from ironclaw.host.gateway import Principal
from ironclaw.host.registry import NotFound

from .. import render
from ..context import Access, ApiContext, access, is_operator, principal
from ..errors import ApiError
from ..schemas import LOCAL_MESSAGE
from ..scope import Scope, Visibility, scope
from ..validate import json_body, query_int

LOCAL = "local"
MAX_LIST = 1000


async def wired_conversations(ctx: ApiContext, agent_group: str) -> list[str]:
    """Local conversations wired to ``agent_group``, sorted. 404 for an unknown group."""
    registry = ctx.handles.registry
    try:
        if not principal().covers(agent_group):  # hidden from its scope: as if missing
            raise NotFound(agent_group)
        await registry.get_agent_group(agent_group)
    except NotFound:
        raise ApiError(404, f"no agent group {agent_group!r:.70}") from None
    found = []
    for group in await registry.list_messaging_groups():
        if group.channel != LOCAL or group.instance != (ctx.handles.local.instance or LOCAL):
            continue
        if any(w.agent_group_id == agent_group for w in await registry.wirings_for(group.id)):
            found.append(group.platform_id)
    return sorted(found)


async def resolve_conversation(ctx: ApiContext, agent_group: str,
                               conversation: str | None = None) -> str:
    wired = await wired_conversations(ctx, agent_group)
    if conversation is not None:
        if conversation not in wired:
            raise ApiError(404, f"conversation {conversation!r:.70} is not wired to "
                                f"{agent_group!r:.70}")
        return conversation
    if not wired:
        raise ApiError(404, f"no local conversation is wired to {agent_group!r:.70}; "
                            "submit a wiring change to add one")
    return agent_group if agent_group in wired else wired[0]


def check_sender(who: Principal, sender: str, text: str) -> None:
    """An operator may post as anyone, except a chat command (``/approve``...): that is
    posted only under the poster's own name, so that nobody can decide a change from
    the local chat as an owner they are not (docs/channels.md)."""
    if not is_operator(who) and sender != who.name:
        raise ApiError(403, f"{who.name} may post only as sender {who.name!r}")
    if sender != who.name and parse_command(text) is not None:
        raise ApiError(403, f"a chat command is posted only under your own name "
                            f"({who.name!r}), never as another sender")


def register(app: QuartTrio, ctx: ApiContext) -> None:
    local = ctx.handles.local

    @app.post("/v1/channels/local/messages")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def post_local_message() -> tuple[dict[str, object], int]:
        body = await json_body(LOCAL_MESSAGE, ctx.settings.max_body_bytes)
        check_sender(principal(), body["sender"], body["text"])
        conversation = await resolve_conversation(ctx, body["agent_group"],
                                                  body.get("conversation"))
        try:
            message_id = await local.post(conversation, body["sender"], body["text"])
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        return {"message_id": message_id, "conversation": conversation}, 202

    @app.get("/v1/channels/local/conversations/<conversation>/messages")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def read_local_conversation(conversation: str) -> dict[str, object]:
        after = query_int("after", -1, -1, 2**62)
        limit = query_int("limit", 200, 1, MAX_LIST)
        chat = await ctx.handles.registry.find_messaging_group(LOCAL, conversation,
                                                               local.instance)
        seen = Visibility.of(principal(), ctx.handles)
        if not seen.everything and (chat is None or not await seen.chat(chat.id)):
            raise ApiError(404, f"no local conversation {conversation!r:.70}")
        entries = local.transcript(conversation)
        if not entries and chat is None:
            raise ApiError(404, f"no local conversation {conversation!r:.70}")
        shown = [render.transcript_entry(e) for e in entries if e.index > after][:limit]
        return {"conversation": conversation, "messages": shown}

