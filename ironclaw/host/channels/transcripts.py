"""The local channel's transcript in host.db: its conversations survive a restart.

host.db decides each entry's ``index`` (one more than the conversation's last, inside
the INSERT's transaction), so the numbering never repeats, not even for a conversation
the channel's memory had let go of. An agent entry carries the ``outbound_id`` it
delivered, unique: a redelivery of the same reply (after a crash between the append and
the delivery record) finds the entry instead of adding a second, which makes the local
channel exactly once.

Retention, enforced on the write path and by :meth:`DurableTranscripts.prune`: a
conversation keeps its last ``keep`` entries; an instance keeps its ``max_conversations``
most recently active conversations (a new one pushes out the least recent); entries
older than the age bound go when the channel prunes (at start and then periodically).
"""

from __future__ import annotations

from typing import Any

import attrs

from ironclaw.host.channels.database import Database
from ironclaw.host.channels.local import Appended, TranscriptEntry, TranscriptRetention

_COLUMNS = "idx, role, sender, text, message_id, at, thread_id"


def _entry(row: tuple[Any, ...]) -> TranscriptEntry:
    index, role, sender, text, message_id, at, thread_id = row
    return TranscriptEntry(role=role, sender=sender, text=text,
                           platform_message_id=message_id, at=at, index=index,
                           thread_id=thread_id)


def _append(conn: Any, instance: str, conversation: str, entry: TranscriptEntry,
            outbound_id: str | None, keep: int, max_conversations: int) -> Appended:
    if outbound_id is not None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM local_transcript WHERE outbound_id = ?",
                           (outbound_id,)).fetchone()
        if row is not None:
            return Appended(_entry(row), duplicate=True, forgotten=())
    last = conn.execute("SELECT max(idx) FROM local_transcript WHERE instance = ? AND "
                        "conversation = ?", (instance, conversation)).fetchone()[0]
    stored = attrs.evolve(entry, index=0 if last is None else last + 1)
    conn.execute(
        "INSERT INTO local_transcript (instance, conversation, idx, role, sender, text, "
        "message_id, at, thread_id, outbound_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (instance, conversation, stored.index, stored.role, stored.sender, stored.text,
         stored.platform_message_id, stored.at, stored.thread_id, outbound_id))
    conn.execute("DELETE FROM local_transcript WHERE instance = ? AND conversation = ? AND "
                 "idx <= ?", (instance, conversation, stored.index - keep))
    forgotten: tuple[str, ...] = ()
    if last is None:  # a new conversation: the instance may now hold one too many
        forgotten = tuple(name for (name,) in conn.execute(
            "SELECT conversation FROM local_transcript WHERE instance = ? "
            "GROUP BY conversation ORDER BY max(at) DESC, conversation LIMIT -1 OFFSET ?",
            (instance, max_conversations)))
        conn.executemany("DELETE FROM local_transcript WHERE instance = ? AND "
                         "conversation = ?", [(instance, name) for name in forgotten])
    return Appended(stored, duplicate=False, forgotten=forgotten)


def _remove(conn: Any, instance: str, conversation: str, index: int) -> None:
    conn.execute("DELETE FROM local_transcript WHERE instance = ? AND conversation = ? AND "
                 "idx = ?", (instance, conversation, index))


def _load(conn: Any, instance: str, keep: int, max_conversations: int
          ) -> list[tuple[str, list[TranscriptEntry]]]:
    names = [name for (name,) in conn.execute(
        "SELECT conversation FROM local_transcript WHERE instance = ? GROUP BY conversation "
        "ORDER BY max(at) DESC, conversation LIMIT ?", (instance, max_conversations))]
    loaded = []
    for name in reversed(names):  # least recently active first, as the channel keeps them
        rows = conn.execute(f"SELECT {_COLUMNS} FROM local_transcript WHERE instance = ? "
                            "AND conversation = ? ORDER BY idx DESC LIMIT ?",
                            (instance, name, keep)).fetchall()
        loaded.append((name, [_entry(row) for row in reversed(rows)]))
    return loaded


def _prune(conn: Any, instance: str, older_than: int) -> int:
    return int(conn.execute("DELETE FROM local_transcript WHERE instance = ? AND at < ?",
                            (instance, older_than)).rowcount)


class DurableTranscripts:
    """The local channel's ``TranscriptLog`` on host.db."""

    def __init__(self, store: Database) -> None:
        self._store = store

    async def append(self, instance: str, conversation: str, entry: TranscriptEntry, *,
                     outbound_id: str | None, limits: TranscriptRetention) -> Appended:
        return await self._store.transaction(_append, instance, conversation, entry,
                                             outbound_id, limits.entries, limits.conversations)

    async def remove(self, instance: str, conversation: str, index: int) -> None:
        await self._store.transaction(_remove, instance, conversation, index)

    async def load(self, instance: str, limits: TranscriptRetention
                   ) -> list[tuple[str, list[TranscriptEntry]]]:
        return await self._store.call(_load, instance, limits.entries,
                                      limits.conversations)

    async def prune(self, instance: str, older_than: int) -> int:
        return await self._store.transaction(_prune, instance, older_than)
