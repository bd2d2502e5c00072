"""Recovery at start: every session with an accepted, unanswered row is woken and
answered, whether an agent had claimed the row before the plane died or the row never
got a sandbox at all, and however long ago the session was last active."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import AckStatus, InboundStatus, MessageKind, SessionMode
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.queue import OutboundReader
from ironclaw.contract.rows import NewInboundMessage, ProcessingAck
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials

from .plane_child import config

MONTH_US = 30 * 24 * 3600 * 1_000_000


def _age(conn: Any, session_id: str, last_active: int) -> None:
    conn.execute("UPDATE sessions SET last_active = ? WHERE id = ?", (last_active, session_id))


async def _leave_unanswered(plane: ControlPlaneHandles) -> dict[str, tuple[str, str]]:
    """Two sessions of the demo chat with one row each, as a plane that died would
    leave them: one never woken (long idle, too), one claimed by an agent that died."""
    group = await plane.registry.find_messaging_group("local", DEMO_CONVERSATION)
    assert group is not None
    queues = plane.sessions._deps.queues
    rows: dict[str, tuple[str, str]] = {}
    for thread in ("never-launched", "claimed"):
        session = await plane.registry.resolve_session("demo", group.id, thread,
                                                       SessionMode.PER_THREAD)
        row = new_message_id("in")
        await queues.enqueue(session.id, [NewInboundMessage(
            id=row, kind=MessageKind.CHAT, content=f"left {thread}")])
        rows[session.id] = row, f"left {thread}"
        writer = await queues.inbound(session.id)
        if thread == "claimed":
            ack = ProcessingAck(row, AckStatus.PROCESSING, now_us())
            await trio.to_thread.run_sync(writer.apply_acks, [ack])
            assert writer.statuses([row])[row] is InboundStatus.PROCESSING
        else:
            await plane.store.transaction(_age, session.id, now_us() - MONTH_US)
    return rows


async def test_recovery_wakes_claimed_and_never_launched_sessions(tmp_path: Path) -> None:
    state, keys = tmp_path / "state", tmp_path / "keys"
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config(state, keys),
                                                 credentials=Credentials()).run)
        rows = await _leave_unanswered(plane)
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config(state, keys),
                                                 credentials=Credentials()).run)
        queues = plane.sessions._deps.queues
        with trio.fail_after(60):
            for session_id, (row, text) in rows.items():
                writer = await queues.inbound(session_id)
                # A file's state, not an event of ours: polled.
                while writer.statuses([row])[row] is not InboundStatus.COMPLETED:  # noqa: ASYNC110
                    await trio.sleep(0.05)
                paths = queues.paths(session_id)
                secret = queues.keys(session_id)
                poll = OutboundReader(paths.outbound_db, secret.outbound).poll()
                replies = [m.content for m in poll.messages if m.in_reply_to == row]
                assert replies == [f"echo: {text}"]
        nursery.cancel_scope.cancel()
