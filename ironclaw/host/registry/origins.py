"""The host's record of where each inbound chat row came from.

The router writes one :class:`InboundOrigin` per session and row before the row is
queued, so it exists before the agent can answer. Delivery reads it for a reply that
names the row it answers (``in_reply_to``): the reply goes into that message's thread
and carries its platform id, because the host recorded both, not because the agent
wrote them. The key includes the session, so a row id copied from another session's
chat finds nothing.

Records older than ``ORIGIN_RETENTION_US`` are dropped by the writes themselves, so
the table stays bounded without a sweeper of its own.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ORIGIN_RETENTION_US", "InboundOrigin", "get_origin", "record_origin"]

# A reply is delivered within seconds of its message; a week covers a channel that was
# down for days, like the seen-event set.
ORIGIN_RETENTION_US = 7 * 24 * 3600 * 1_000_000
# A longer id is not stored (a cut one could name another message): the reply then
# goes out unthreaded rather than somewhere else.
MAX_ID_CHARS = 512

Conn = Any


@attrs.frozen
class InboundOrigin:
    """The chat a row came from, as the channel adapter reported it."""

    channel: str
    instance: str
    platform_id: str
    thread_id: str | None
    platform_message_id: str | None


def _bounded(value: str | None) -> str | None:
    return value if value is not None and len(value) <= MAX_ID_CHARS else None


def record_origin(conn: Conn, session_id: str, message_id: str, origin: InboundOrigin,
                  now: int) -> None:
    conn.execute("DELETE FROM inbound_origins WHERE at < ?", (now - ORIGIN_RETENTION_US,))
    conn.execute(
        "INSERT OR REPLACE INTO inbound_origins (session_id, message_id, channel, instance, "
        "platform_id, thread_id, platform_message_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, message_id, origin.channel, origin.instance, origin.platform_id,
         _bounded(origin.thread_id), _bounded(origin.platform_message_id), now))


def get_origin(conn: Conn, session_id: str, message_id: str) -> InboundOrigin | None:
    row = conn.execute(
        "SELECT channel, instance, platform_id, thread_id, platform_message_id "
        "FROM inbound_origins WHERE session_id = ? AND message_id = ?",
        (session_id, message_id)).fetchone()
    return None if row is None else InboundOrigin(*row)
