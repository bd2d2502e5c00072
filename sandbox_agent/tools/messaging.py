"""send_message, send_file, list_destinations, read_persona.

A message goes to the origin chat unless ``to`` names one of the destinations the
host published in inbound; the host checks the name again before delivering, so
this check is for the model's benefit (a useful error), not the wall. A file goes as
a ``send_file`` system action naming its workspace path: the host reads it itself,
through its hardened opener, and uploads it (docs/channels.md, "Files").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from ironclaw.contract.actions import MAX_CAPTION, MAX_FILE_PATH, SendFile
from ironclaw.contract.rows import MAX_CONTENT_BYTES

from ..workspace import WorkspaceError
from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg

# The host's default cap on a sent file; it checks again, with its own setting.
MAX_SENT_FILE_BYTES = 20 * 1024 * 1024
TO = {"type": "string",
      "description": "A destination name from list_destinations; omit for this chat."}


async def send_message(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    text = required_string(args, "text", max_bytes=MAX_CONTENT_BYTES)
    destination = ctx.destination_named(string_arg(args, "to", max_bytes=256, required=False))
    ctx.emit_chat(text, destination=destination)
    return f"queued for {destination or 'this chat'}; it is sent when this turn completes"


async def send_file(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    path = required_string(args, "path", max_bytes=MAX_FILE_PATH)
    caption = string_arg(args, "caption", max_bytes=MAX_CAPTION, required=False)
    destination = ctx.destination_named(string_arg(args, "to", max_bytes=256, required=False))
    relative = await trio.to_thread.run_sync(_sendable, ctx, path)
    ctx.emit_system(SendFile(path=relative, caption=caption or None), destination=destination)
    return (f"{relative} queued for {destination or 'this chat'}; the host checks its "
            "size and type and sends it when this turn completes")


def _sendable(ctx: ToolContext, path: str) -> str:
    """The workspace path of a regular file, links resolved (the host follows none)."""
    try:
        resolved = ctx.workspace.resolve_existing(path)
    except WorkspaceError as exc:
        raise ToolError(str(exc)) from None
    if not resolved.is_file():
        raise ToolError(f"{path!r:.200} is not a file")
    size = resolved.stat().st_size
    if size > MAX_SENT_FILE_BYTES:
        raise ToolError(f"the file has {size} bytes; the limit is {MAX_SENT_FILE_BYTES}")
    return resolved.relative_to(ctx.workspace.root.resolve()).as_posix()


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
         "Send a workspace file to this chat or a named destination, as a file the "
         f"chat shows (at most {MAX_SENT_FILE_BYTES} bytes; text, PDF, images, audio). "
         "Files people send you arrive under inbox/.",
         schema({"path": STRING, "to": TO, "caption": STRING}, ["path"]), send_file),
    Tool("list_destinations", "List the named places you may send messages to.",
         schema({}), list_destinations),
    Tool("read_persona", "Read your persona (identity, soul, instructions). Read-only: "
         "to change it, use request_capability_change with kind 'persona'.",
         schema({}), read_persona),
)
