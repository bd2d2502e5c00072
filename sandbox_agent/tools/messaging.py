"""send_message, send_file, list_destinations, read_persona.

A message goes to the origin chat unless ``to`` names one of the destinations the
host published in inbound; the host checks the name again before delivering, so
this check is for the model's benefit (a useful error), not the wall.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import trio

from ironclaw.contract.rows import MAX_CONTENT_BYTES

from ..workspace import WorkspaceError
from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg

MAX_SENT_FILE_BYTES = 64 * 1024
MAX_CAPTION_BYTES = 2000
TO = {"type": "string",
      "description": "A destination name from list_destinations; omit for this chat."}


async def send_message(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    text = required_string(args, "text", max_bytes=MAX_CONTENT_BYTES)
    destination = ctx.destination_named(string_arg(args, "to", max_bytes=256, required=False))
    ctx.emit_chat(text, destination=destination)
    return f"queued for {destination or 'this chat'}; it is sent when this turn completes"


async def send_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    path = required_string(args, "path", max_bytes=4096)
    caption = string_arg(args, "caption", max_bytes=MAX_CAPTION_BYTES, required=False)
    destination = ctx.destination_named(string_arg(args, "to", max_bytes=256, required=False))
    try:
        body = await trio.to_thread.run_sync(functools.partial(
            ctx.workspace.read_text, path, max_bytes=MAX_SENT_FILE_BYTES))
    except WorkspaceError as exc:
        raise ToolError(str(exc)) from None
    header = f"{caption}\n\n" if caption else ""
    ctx.emit_chat(f"{header}[file: {path}]\n{body}", destination=destination)
    return f"{path} queued for {destination or 'this chat'}"


async def list_destinations(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    if not ctx.destinations:
        return "No named destinations; messages go to this chat."
    lines = []
    for d in sorted(ctx.destinations, key=lambda d: d.name):
        label = f" ({d.display_name})" if d.display_name else ""
        lines.append(f"{d.name}{label}: {d.type}")
    return "\n".join(lines)


async def read_persona(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    persona = ctx.persona
    sections = [("Identity", persona.identity), ("Soul", persona.soul),
                ("Instructions", persona.instructions)]
    text = "\n\n".join(f"## {title}\n{body}" for title, body in sections if body.strip())
    return text or "No persona is configured."


MESSAGING_TOOLS = (
    Tool("send_message",
         "Send a chat message now, in addition to your reply: to this chat, or to a named "
         "destination.",
         schema({"text": STRING, "to": TO}, ["text"]), send_message),
    Tool("send_file",
         f"Send a workspace text file (at most {MAX_SENT_FILE_BYTES} bytes) as a message.",
         schema({"path": STRING, "to": TO, "caption": STRING}, ["path"]), send_file),
    Tool("list_destinations", "List the named places you may send messages to.",
         schema({}), list_destinations),
    Tool("read_persona", "Read your persona (identity, soul, instructions). Read-only: "
         "to change it, use request_capability_change with kind 'persona'.",
         schema({}), read_persona),
)
