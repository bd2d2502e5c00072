"""A compromised agent plants hostile files where the host reads, against a real
control plane (process runtime).

Session A's agent is frozen (SIGSTOP, so it cannot rescue a blocked reader by opening
the other end of a FIFO), and something else is put where the host expects a small
file: a FIFO at ``heartbeat`` (this once stopped the whole plane: ``/healthz`` timed
out and other chats got no reply), a FIFO, symlink, device or hard link at the queue file
or its fence, a schema with a generated column. Session B, an innocent conversation
on the same plane, must keep getting replies; a file that proves A hostile
quarantines A (stopped, evented, audited, not restarted), and a FIFO heartbeat only
costs A its own heartbeat.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlcipher3
import trio

from ironclaw.contract.enums import EngageMode
from ironclaw.contract.layout import HEARTBEAT_FILE, SessionLayout
from ironclaw.contract.queue.fence import WriterFence
from ironclaw.contract.queue.files import fence_path_for
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import Wiring
from ironclaw.host.sessions.quarantine import SessionQuarantined

from ..e2e.plane_child import config

OTHER = "other"
REPLY_WITHIN_S = 60


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(
            config(tmp_path / "state", tmp_path / "keys"), credentials=Credentials()).run)
        group = await handles.registry.ensure_messaging_group("local", OTHER)
        await handles.registry.put_wiring(Wiring(
            id="other-local", messaging_group_id=group.id, agent_group_id="demo",
            engage_mode=EngageMode.PATTERN, pattern="."))
        yield handles
        nursery.cancel_scope.cancel()


async def converse(plane: ControlPlaneHandles, conversation: str, text: str) -> str:
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, "operator", text)
    with trio.fail_after(REPLY_WITHIN_S):
        return (await plane.local.wait_for_reply(conversation, after_index=mark)).text


async def session_of(plane: ControlPlaneHandles, conversation: str) -> str:
    group = await plane.registry.ensure_messaging_group("local", conversation)
    (session,) = [s for s in await plane.registry.list_sessions()
                  if s.messaging_group_id == group.id]
    return session.id


@contextlib.contextmanager
def frozen(plane: ControlPlaneHandles, session_id: str) -> Iterator[None]:
    """Stop the agent process (its own process group) and let it go again after."""
    layout = SessionLayout.under(plane.config.state_dir, session_id)
    pid = int((layout.root / "run" / "agent.pid").read_text())
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


def replace_with_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def replace_with_symlink_to_big_file(path: Path) -> None:
    big = path.with_name("big-target")
    with open(big, "wb") as handle:
        handle.truncate(512 << 20)  # sparse: costs nothing to make, 512 MiB to read
    path.unlink()
    path.symlink_to(big)


def replace_with_device(path: Path) -> None:
    """/dev/zero's numbers: reading it never ends. Making one needs CAP_MKNOD (so no
    sandbox can; the test needs root), but a plain open() would have read it."""
    path.unlink()
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")


def replace_with_hard_link(path: Path) -> None:
    other = path.with_name("copy-of-" + path.name)
    other.write_bytes(path.read_bytes())
    path.unlink()
    os.link(other, path)


def bump_fence(db: Path) -> None:
    fence = WriterFence(fence_path_for(db))
    try:
        with fence.writing():
            pass
    finally:
        fence.close()


def generated_column_schema(plane: ControlPlaneHandles, session_id: str) -> None:
    """What a compromised agent can do with its own key: a content column the host
    computes on every read."""
    queues = plane.sessions._deps.queues
    db = queues.paths(session_id).outbound_db
    key = queues.keys(session_id).outbound
    fence = WriterFence(fence_path_for(db))
    conn = sqlcipher3.connect(str(db), isolation_level=None)
    try:
        conn.execute(key.pragma())
        with fence.writing():
            conn.executescript(
                "ALTER TABLE messages_out RENAME TO old; CREATE TABLE messages_out "
                "(id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, in_reply_to TEXT, "
                "timestamp INTEGER NOT NULL, deliver_after INTEGER, recurrence TEXT, "
                "kind TEXT NOT NULL, platform_id TEXT, channel_type TEXT, "
                "thread_id TEXT, destination TEXT, content TEXT GENERATED ALWAYS AS "
                "(printf('%.*c', 300000000, 'x'))); DROP TABLE old; "
                "INSERT INTO messages_out (id, seq, timestamp, kind) "
                "VALUES ('msg_evil', 999999, 1800000000000000, 'chat');")
    finally:
        conn.close()
        fence.close()


async def test_a_fifo_heartbeat_stalls_nothing_but_its_own_session(
        plane: ControlPlaneHandles) -> None:
    assert await converse(plane, DEMO_CONVERSATION, "hello") == "echo: hello"
    session_a = await session_of(plane, DEMO_CONVERSATION)
    outbound = plane.sessions._deps.queues.paths(session_a).outbound_dir
    with frozen(plane, session_a):
        replace_with_fifo(outbound / HEARTBEAT_FILE)  # inotify: the tail reads it now
        await trio.sleep(1.0)  # several safety polls of A, each touching the FIFO
        assert await converse(plane, OTHER, "still there?") == "echo: still there?"
        actor = plane.sessions.actor(session_a)
        assert actor is not None, "a FIFO heartbeat alone is no proof: A stays up"
    # A's reader never blocked: the FIFO is still unopened by any writer.
    assert (outbound / HEARTBEAT_FILE).is_fifo()


PLANTS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "fifo at the queue file": ("outbound.db", replace_with_fifo),
    "fifo at the fence": ("outbound.db.fence", replace_with_fifo),
    "symlink at the queue file": ("outbound.db", replace_with_symlink_to_big_file),
    "hard link at the fence": ("outbound.db.fence", replace_with_hard_link),
    "device at the queue file": ("outbound.db", replace_with_device),
}


@pytest.mark.parametrize("attack", [*PLANTS, "generated column"])
async def test_a_hostile_outbound_file_quarantines_its_session_only(
        plane: ControlPlaneHandles, attack: str) -> None:
    assert await converse(plane, DEMO_CONVERSATION, "hello") == "echo: hello"
    assert await converse(plane, OTHER, "hi") == "echo: hi"
    session_a = await session_of(plane, DEMO_CONVERSATION)
    outbound = plane.sessions._deps.queues.paths(session_a).outbound_dir
    async with plane.events.subscribe(["session.quarantined", "session.retired",
                                       "session.started"]) as events:
        with frozen(plane, session_a):
            if attack == "generated column":
                await trio.to_thread.run_sync(generated_column_schema, plane, session_a)
            else:
                name, plant = PLANTS[attack]
                await trio.to_thread.run_sync(plant, outbound / name)
                if name == "outbound.db":
                    # A commit, as far as the fence says: the host reads only then.
                    await trio.to_thread.run_sync(bump_fence, outbound / name)
            with trio.fail_after(REPLY_WITHIN_S):
                quarantined = await events.receive()
                while quarantined.type != "session.quarantined":  # type: ignore[union-attr]
                    quarantined = await events.receive()
        event = quarantined.event  # type: ignore[union-attr]
        assert isinstance(event, SessionQuarantined)
        assert event.session_id == session_a and event.agent_group_id == "demo"
        with trio.fail_after(REPLY_WITHIN_S):
            await plane.sessions.wait_retired(session_a)
        assert plane.sessions.actor(session_a) is None  # its sandbox is stopped
        # B carries on; a new message to A is kept, but A does not start again.
        assert await converse(plane, OTHER, "and now?") == "echo: and now?"
        await plane.local.post(DEMO_CONVERSATION, "operator", "wake up")
        await trio.sleep(1.0)
        assert plane.sessions.actor(session_a) is None
        restarted = []
        while True:
            try:
                item = events.receive_nowait()
            except trio.WouldBlock:
                break
            if item.type == "session.started" and item.event.session_id == session_a:  # type: ignore[union-attr]
                restarted.append(item)
        assert restarted == []
    with trio.fail_after(10):
        while not [e for e in await plane.audit.tail(50)  # noqa: ASYNC110 (a file)
                   if e.kind == "session.quarantined"]:
            await trio.sleep(0.05)
    (entry,) = [e for e in await plane.audit.tail(50) if e.kind == "session.quarantined"]
    assert entry.fields["session_id"] == session_a and entry.fields["reason"]
