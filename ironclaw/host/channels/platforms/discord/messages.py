"""From a Discord ``MESSAGE_CREATE`` to an :class:`InboundEvent`, or to nothing.

Where a message lives: a direct message (no ``guild_id``) is its own chat, the DM
channel, and ``direct``. A guild message's chat is its channel; but a message posted in
a thread (channel types 10, 11, 12) belongs to the thread's PARENT channel, with
``thread_id`` = the thread's channel id. So one wiring on a channel covers its threads,
per-thread session modes give each thread its own session, and a reply addressed to
``thread_id`` lands back in the thread (a thread is a channel one can post to).

MESSAGE_CREATE does not say whether its channel is a thread, so :class:`ChannelKinds`
remembers it from ``GUILD_CREATE`` (``channels``, ``threads``), ``CHANNEL_CREATE``,
``THREAD_CREATE``/``THREAD_UPDATE`` and ``THREAD_LIST_SYNC``; a channel it has never
heard of (after a resume there is no ``GUILD_CREATE``) is looked up once with
``GET /channels/{id}``.

Ignored: messages by any bot (us included) or webhook, and system messages (joins,
pins, thread-created notices...): only types 0 (default) and 19 (reply) are user text.
Mentioned: the bot's user id in ``mentions`` (which covers a reply that pings us), or
``<@id>``/``<@!id>`` in the text; a direct message always counts as addressed to us.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ...base import InboundEvent

__all__ = ["THREAD_TYPES", "ChannelKinds", "inbound_message", "snowflake"]

THREAD_TYPES = frozenset({10, 11, 12})  # announcement, public, private thread
USER_MESSAGE_TYPES = frozenset({0, 19})
MAX_TEXT_CHARS = 16 * 1024
MAX_KNOWN_CHANNELS = 50_000


def snowflake(value: object) -> str | None:
    """A Discord id (a decimal integer of at most 20 digits, as a string)."""
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isdigit():
        return value
    return None


class ChannelKinds:
    """Channel id -> parent channel id if it is a thread, None if it is not. Bounded:
    the least recently used entries are forgotten first."""

    def __init__(self, limit: int = MAX_KNOWN_CHANNELS) -> None:
        self._limit = limit
        self._known: OrderedDict[str, str | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def learn(self, channel: object) -> None:
        if not isinstance(channel, dict):
            return
        channel_id = snowflake(channel.get("id"))
        if channel_id is None:
            return
        kind = channel.get("type")
        parent = snowflake(channel.get("parent_id")) if kind in THREAD_TYPES else None
        if kind in THREAD_TYPES and parent is None:
            return  # a thread without its parent tells us nothing usable
        self._known[channel_id] = parent
        self._known.move_to_end(channel_id)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    def learn_all(self, channels: object) -> None:
        if isinstance(channels, list):
            for channel in channels:
                self.learn(channel)

    def knows(self, channel_id: str) -> bool:
        return channel_id in self._known

    def parent_of(self, channel_id: str) -> str | None:
        """The parent if ``channel_id`` is a known thread, else None."""
        parent = self._known.get(channel_id)
        if channel_id in self._known:
            self._known.move_to_end(channel_id)
        return parent


def wants(message: object, bot_id: str | None) -> bool:
    """Is ``message`` (a MESSAGE_CREATE payload) a user's text we should route?"""
    if not isinstance(message, dict) or message.get("type", 0) not in USER_MESSAGE_TYPES:
        return False
    author = message.get("author")
    if not isinstance(author, dict) or author.get("bot") or message.get("webhook_id"):
        return False
    author_id = snowflake(author.get("id"))
    return (author_id is not None and author_id != bot_id
            and snowflake(message.get("id")) is not None
            and snowflake(message.get("channel_id")) is not None)


def _display_name(message: dict[str, Any]) -> str | None:
    member = message.get("member")
    author = message.get("author")
    candidates = [member.get("nick") if isinstance(member, dict) else None]
    if isinstance(author, dict):
        candidates += [author.get("global_name"), author.get("username")]
    for name in candidates:
        if isinstance(name, str) and name.strip():
            return name.strip()[:128]
    return None


def _mentions(message: dict[str, Any], bot_id: str, text: str) -> bool:
    mentions = message.get("mentions")
    if isinstance(mentions, list) and any(
            isinstance(user, dict) and user.get("id") == bot_id for user in mentions):
        return True
    return f"<@{bot_id}>" in text or f"<@!{bot_id}>" in text


def inbound_message(message: dict[str, Any], bot_id: str, instance: str,
                    parent: str | None) -> InboundEvent:
    """``message`` (one :func:`wants` accepted) as an event; ``parent`` is its
    channel's parent when that channel is a thread."""
    channel_id = str(message["channel_id"])
    author = message["author"]
    text = message.get("content")
    text = text[:MAX_TEXT_CHARS] if isinstance(text, str) else ""
    direct = message.get("guild_id") is None
    if parent is not None and not direct:
        platform_id, thread_id = parent, channel_id
    else:
        platform_id, thread_id = channel_id, None
    return InboundEvent(
        channel="discord", instance=instance, platform_id=platform_id,
        sender_handle=str(author["id"]), text=text, thread_id=thread_id,
        mentioned=direct or _mentions(message, bot_id, text), direct=direct,
        platform_message_id=str(message["id"]), sender_display_name=_display_name(message))
