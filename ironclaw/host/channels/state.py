"""What a platform adapter must remember across restarts, kept in host.db.

Two things, per ``(channel, instance)``:

* **cursors**: the platform's resume point (Telegram's ``getUpdates`` offset, Matrix's
  ``since`` token, Discord's session and sequence). A restart resumes from the last
  cursor saved, so it neither loses nor repeats what the platform already gave us.
* **seen event ids**: a redelivered platform event (a webhook retry, a replay after a
  reconnect) is recognised and dropped instead of being routed twice.

The order that keeps invariant 10 (nothing acknowledged is lost) is fixed by
:meth:`ChannelState.hand_over`: route first, wait until the router has committed every
row for the event, and only then mark the event seen and move the cursor, in one
transaction. A crash between the commit and that transaction makes the platform give
the event again and it is routed a second time: a window one event wide, the usual
at-least-once. Marking first would close it by losing the event instead.

When the router refuses an event (its session's inbound queue is full) nothing was
committed, so the event is not marked seen: a platform that redelivers (a webhook
retry) routes it again. A cursor still moves past it, because a polling stream cannot
hold one message back without stalling every conversation behind it; the refusal is
logged and published as ``session.inbound_full``.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from ironclaw.contract.clock import now_us
from ironclaw.host.channels.database import Database
from ironclaw.runtime import Reply

from .base import InboundEvent, InboundRefused

__all__ = ["ChannelState", "prune_seen_events"]

logger = logging.getLogger(__name__)

# Seen ids older than this are forgotten by ``prune``; platforms redeliver within
# minutes or hours, never weeks.
DEFAULT_SEEN_RETENTION_US = 7 * 24 * 3600 * 1_000_000
MAX_CURSOR_CHARS = 4096
MAX_EVENT_ID_CHARS = 512


def _get_cursor(conn: Any, channel: str, instance: str, name: str) -> str | None:
    row = conn.execute("SELECT value FROM channel_cursors WHERE channel = ? AND instance = ? "
                       "AND name = ?", (channel, instance, name)).fetchone()
    return None if row is None else str(row[0])


def _set_cursor(conn: Any, channel: str, instance: str, name: str, value: str,
                at: int) -> None:
    conn.execute(
        "INSERT INTO channel_cursors (channel, instance, name, value, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, instance, name) DO UPDATE SET "
        "value = excluded.value, updated_at = excluded.updated_at",
        (channel, instance, name, value, at))


def _is_seen(conn: Any, channel: str, instance: str, event_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM channel_seen WHERE channel = ? AND instance = ? "
                       "AND event_id = ?", (channel, instance, event_id)).fetchone()
    return row is not None


def _settle(conn: Any, channel: str, instance: str, event_id: str | None,
            cursor: tuple[str, str] | None, at: int) -> None:
    if event_id is not None:
        conn.execute("INSERT OR IGNORE INTO channel_seen (channel, instance, event_id, "
                     "seen_at) VALUES (?, ?, ?, ?)", (channel, instance, event_id, at))
    if cursor is not None:
        _set_cursor(conn, channel, instance, cursor[0], cursor[1], at)


def _prune(conn: Any, before: int) -> int:
    return int(conn.execute("DELETE FROM channel_seen WHERE seen_at < ?", (before,)).rowcount)


class ChannelState:
    """One adapter instance's durable memory. Cheap to create; all work is on the
    store's thread."""

    def __init__(self, store: Database, channel: str, instance: str) -> None:
        self._store = store
        self.channel = channel
        self.instance = instance

    async def cursor(self, name: str) -> str | None:
        return await self._store.call(_get_cursor, self.channel, self.instance, name)

    async def save_cursor(self, name: str, value: str) -> None:
        _check(name, value)
        await self._store.transaction(_set_cursor, self.channel, self.instance, name, value,
                                      now_us())

    async def seen(self, event_id: str) -> bool:
        return await self._store.call(_is_seen, self.channel, self.instance,
                                      event_id[:MAX_EVENT_ID_CHARS])

    async def settle(self, event_id: str | None, cursor: tuple[str, str] | None = None
                     ) -> None:
        """Mark ``event_id`` seen and move ``cursor`` to ``(name, value)``, atomically."""
        if cursor is not None:
            _check(*cursor)
        await self._store.transaction(
            _settle, self.channel, self.instance,
            None if event_id is None else event_id[:MAX_EVENT_ID_CHARS], cursor, now_us())

    async def hand_over(self, events: trio.MemorySendChannel[InboundEvent],
                        event: InboundEvent, *, event_id: str | None,
                        cursor: tuple[str, str] | None = None,
                        raise_refused: bool = False) -> bool:
        """Route ``event`` unless ``event_id`` was seen before, wait until the router has
        committed it, then settle. Returns False for a duplicate (dropped, but the cursor
        still moves past it). ``event.accepted`` is supplied here; pass an event without
        one. A refused event (its session's inbound is full) is not marked seen; it
        raises :class:`InboundRefused` with ``raise_refused`` (for an adapter that can
        answer its platform with a failure), and is otherwise logged and returns
        False."""
        if event_id is not None and await self.seen(event_id):
            if cursor is not None:
                await self.save_cursor(*cursor)
            return False
        accepted = Reply[None]()
        await events.send(attrs.evolve(event, accepted=accepted, event_id=event_id))
        try:
            await accepted.wait()
        except InboundRefused as refused:
            with trio.CancelScope(shield=True):
                if cursor is not None:
                    await self.save_cursor(*cursor)
            if raise_refused:
                raise
            logger.warning("%s/%s: a message was refused: %s", self.channel,
                           self.instance or "default", refused)
            return False
        # The rows are committed: settle even if we are being cancelled now, or a
        # restart would route this event again.
        with trio.CancelScope(shield=True):
            await self.settle(event_id, cursor)
        return True

    async def prune(self, *, retention_us: int = DEFAULT_SEEN_RETENTION_US) -> int:
        return await self._store.transaction(_prune, now_us() - retention_us)


async def prune_seen_events(store: Database, before_us: int) -> int:
    """Forget every channel's seen event ids recorded before ``before_us``."""
    return await store.transaction(_prune, before_us)


def _check(name: str, value: str) -> None:
    if not name or len(name) > 64:
        raise ValueError("a cursor name is 1 to 64 characters")
    if len(value) > MAX_CURSOR_CHARS:
        raise ValueError(f"a cursor value is at most {MAX_CURSOR_CHARS} characters")
