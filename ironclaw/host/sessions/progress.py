"""How far each session's outbound rows have been handled, durably.

The cursor lives in host.db (``session_cursors``), so a restarted control plane
resumes its tail where delivery left off instead of at zero; and it is mirrored into
the session's inbound ``host_progress`` so the sandbox may prune what is handled.
"""

from __future__ import annotations

from typing import Any

import trio

from ironclaw.contract.clock import now_us
from ironclaw.host.inbound.queues import SessionQueues

from ..store import HostStore


def _advance(conn: Any, session_id: str, seq: int, at: int) -> int:
    conn.execute(
        "INSERT INTO session_cursors (session_id, outbound_seq, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (session_id) DO UPDATE SET outbound_seq = "
        "max(outbound_seq, excluded.outbound_seq), updated_at = excluded.updated_at",
        (session_id, seq, at))
    row = conn.execute("SELECT outbound_seq FROM session_cursors WHERE session_id = ?",
                       (session_id,)).fetchone()
    return int(row[0])


def _cursor(conn: Any, session_id: str) -> int:
    row = conn.execute("SELECT outbound_seq FROM session_cursors WHERE session_id = ?",
                       (session_id,)).fetchone()
    return 0 if row is None else int(row[0])


class SessionProgress:
    """Implements ``mailboxes.OutboundProgress``."""

    def __init__(self, store: HostStore, queues: SessionQueues) -> None:
        self._store = store
        self._queues = queues

    async def handled_through(self, session_id: str, seq: int) -> None:
        current = await self._store.transaction(_advance, session_id, seq, now_us())
        writer = await self._queues.inbound(session_id)
        await trio.to_thread.run_sync(writer.record_outbound_handled, current)

    async def cursor(self, session_id: str) -> int:
        return await self._store.call(_cursor, session_id)
