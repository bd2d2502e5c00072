"""From a Slack Events API event to an :class:`InboundEvent`, or to nothing.

Which events become messages:

* ``message`` with no ``subtype`` (or ``file_share``, ``thread_broadcast``: a user's
  message with a file, a thread reply also posted to the channel), from a user. Every
  other subtype is ignored: edits (``message_changed``), deletions, joins, topic
  changes, bot posts (``bot_message``).
* ``app_mention``: the same user message, seen again because it mentions the bot.

Ignored too: anything with a ``bot_id`` (every bot, us included, so two bots cannot
talk each other into a loop), anything from the bot's own user, ``hidden`` events.

Slack sends BOTH ``message`` and ``app_mention`` for one message that mentions the bot,
in separate envelopes, in either order. Both map to the same event id,
``<channel>:<ts>`` (a message's ``ts`` is unique within its channel), and both say
``mentioned``: a ``message`` counts as a mention when its text holds ``<@BOT_USER_ID>``.
So whichever arrives first is routed, with the mention, and the other is dropped as a
duplicate by the seen set.
"""

from __future__ import annotations

from typing import Any

import attrs

from ...base import InboundEvent

__all__ = ["BotIdentity", "Incoming", "incoming_message"]

ACCEPTED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 64 * 1024


@attrs.frozen
class BotIdentity:
    """Who we are, from ``auth.test``."""

    user_id: str
    bot_id: str | None = None


@attrs.frozen
class Incoming:
    event: InboundEvent
    event_id: str  # the dedup key: "<channel>:<ts>"


def _ident(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isprintable():
        return value
    return None


def _display_name(event: dict[str, Any]) -> str | None:
    profile = event.get("user_profile")
    if not isinstance(profile, dict):
        return None
    for key in ("display_name", "real_name", "name"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:128]
    return None


def incoming_message(event: object, bot: BotIdentity, instance: str) -> Incoming | None:
    """The message in ``event`` (a Slack event object), or None to ignore it."""
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    if kind == "message" and event.get("subtype") not in ACCEPTED_SUBTYPES:
        return None
    if event.get("bot_id") or event.get("hidden"):
        return None
    user = _ident(event.get("user"))
    channel = _ident(event.get("channel"))
    ts = _ident(event.get("ts"))
    if user is None or channel is None or ts is None or user == bot.user_id:
        return None
    text = event.get("text")
    if not isinstance(text, str):
        text = ""
    text = text[:MAX_TEXT_CHARS]
    channel_type = event.get("channel_type")
    # app_mention carries no channel_type; a DM channel's id starts with "D".
    direct = channel_type == "im" if isinstance(channel_type, str) else channel.startswith("D")
    mentioned = kind == "app_mention" or direct or f"<@{bot.user_id}>" in text
    thread_ts = _ident(event.get("thread_ts"))
    return Incoming(
        InboundEvent(channel="slack", instance=instance, platform_id=channel,
                     sender_handle=user, text=text, thread_id=thread_ts,
                     mentioned=mentioned, direct=direct, platform_message_id=ts,
                     sender_display_name=_display_name(event)),
        event_id=f"{channel}:{ts}")
