"""Reading Matrix events: what is a message for the agent, a mention, a thread, a DM.

Pure functions over the JSON the homeserver sends; anything not shaped as the spec
says is skipped, never trusted.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from .media import Media, media_of

__all__ = ["RoomMessage", "direct_rooms_of", "is_mentioned", "joined_count_of",
           "room_message", "strip_reply_fallback"]

# Message types a person types; m.notice is what bots send (and must not answer, or
# two bots would talk forever); media types carry a file name, not a message.
TEXT_MSGTYPES = ("m.text", "m.emote")
MAX_ID_CHARS = 255  # the spec's limit for event, room and user ids


@attrs.frozen
class RoomMessage:
    event_id: str
    sender: str
    body: str
    thread_id: str | None
    mentioned: bool  # by the event itself; a DM counts as mentioned on top of this
    media: Media | None = None  # the file of an m.file, m.image, ... event


def _id(value: object, sigil: str) -> str | None:
    if isinstance(value, str) and value.startswith(sigil) and 1 < len(value) <= MAX_ID_CHARS:
        return value
    return None


def is_mentioned(content: dict[str, Any], me: str, display_name: str | None) -> bool:
    """``m.mentions`` decides when present (spec v1.7+); otherwise the legacy rule: our
    user id or display name in the text, the name as a whole word."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, dict):
        user_ids = mentions.get("user_ids")
        return isinstance(user_ids, list) and me in user_ids
    name = None
    if display_name:
        name = re.compile(rf"(?<!\w){re.escape(display_name)}(?!\w)", re.IGNORECASE)
    for text in (content.get("body"), content.get("formatted_body")):
        if not isinstance(text, str):
            continue
        if me.lower() in text.lower() or (name is not None and name.search(text)):
            return True
    return False


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines older clients put before a reply's text."""
    lines = body.split("\n")
    if not lines[0].startswith("> "):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:]) if index < len(lines) else body


def room_message(event: object, me: str, display_name: str | None) -> RoomMessage | None:
    """The message in a timeline event, or None for what the agent should not see: our
    own events, edits, notices, redacted or malformed events. A file event is a
    message with ``media`` (see :mod:`.media`)."""
    if not isinstance(event, dict) or event.get("type") != "m.room.message":
        return None
    event_id, sender = _id(event.get("event_id"), "$"), _id(event.get("sender"), "@")
    content = event.get("content")
    if event_id is None or sender is None or sender == me or not isinstance(content, dict):
        return None
    body = content.get("body")
    media = media_of(content)
    if media is not None:
        body = media[1]
    elif content.get("msgtype") not in TEXT_MSGTYPES or not isinstance(body, str):
        return None
    relation = content.get("m.relates_to")
    relation = relation if isinstance(relation, dict) else {}
    if relation.get("rel_type") == "m.replace":  # an edit: the original was answered
        return None
    thread_id = _id(relation.get("event_id"), "$") if relation.get(
        "rel_type") == "m.thread" else None
    if isinstance(relation.get("m.in_reply_to"), dict):
        body = strip_reply_fallback(body)
    return RoomMessage(event_id, sender, body, thread_id,
                       is_mentioned(content, me, display_name),
                       media[0] if media is not None else None)


def direct_rooms_of(content: object) -> set[str]:
    """Room ids in an ``m.direct`` account-data content (``{user: [room, ...]}``)."""
    rooms: set[str] = set()
    if isinstance(content, dict):
        for listed in content.values():
            if isinstance(listed, list):
                rooms.update(r for r in listed if _id(r, "!") is not None)
    return rooms


def joined_count_of(room: dict[str, Any]) -> int | None:
    """``m.joined_member_count`` from a joined room's sync summary, when it is there
    (servers send it when it changed)."""
    summary = room.get("summary")
    count = summary.get("m.joined_member_count") if isinstance(summary, dict) else None
    return count if isinstance(count, int) and count >= 0 else None
