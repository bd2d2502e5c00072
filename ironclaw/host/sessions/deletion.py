"""Deleting a session: everything the host keeps for it, in an order chosen for what a
crash part way would leave.

A session is an agent's conversation with one chat. Deleting it (an operator's act, or
the retention policy for idle sessions) removes, in this order:

1. its queues from use: :meth:`SessionQueues.forget` makes every later open of its
   inbound file or key fail (``SessionGone``), so a router, task or answer that looked
   it up a moment before cannot bring it back to life;
2. its sandbox: the actor is stopped and waited for;
3. its rows in host.db, in one transaction: the session, its delivery cursor, its
   scheduled tasks, its questions and its delivery records. A message that arrives
   afterwards starts a new session, with a new id;
4. its key (``KeyStore.delete_session``): from here on its queue files are ciphertext
   nobody can read, so a crash before the next step leaves nothing readable;
5. its files: the session directory (both queues, sockets, run state) and its key
   directory; on request, its agent group's workspace is emptied too. The workspace is
   the group's, shared by its sessions, so that is refused while another session of
   the group exists.

Once begun, a deletion runs to the end even if its caller goes away (it is shielded
from cancellation; only a sessions actor that will not stop its sandbox within
``STOP_WAIT_S`` fails it, before anything is gone). A crash of the control plane part
way leaves no session that looks alive (the row goes first of what is durable); its
key and files, left behind without a row, are removed at the next start, before any
session runs (:meth:`SessionDeleter.reap_orphans`).

A quarantined session is refused: its hold (and its hostile files) stay until an owner
lifts it. The deletion is published as ``session.deleted``, which the audit recorder
appends to the audit log.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trio

from ironclaw.contract.ids import InvalidId, validate_session_id
from ironclaw.contract.layout import SessionLayout
from ironclaw.host.store import HostStore

from ..events import SessionDeleted
from ..mailboxes import StopSession
from .manager import Sessions
from .session_actor import SessionDeps

logger = logging.getLogger(__name__)

RETENTION = "retention"
STOP_WAIT_S = 60.0


class SessionHeld(Exception):
    """The session is quarantined; lift the hold first."""


class WorkspaceShared(Exception):
    """The workspace is shared with another session of the same agent group."""


def _delete_rows(conn: Any, session_id: str) -> bool:
    found = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
    for table in ("session_cursors", "schedules", "questions", "delivery_records"):
        conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
    return bool(found)


def _idle_sessions(conn: Any, before: int) -> list[str]:
    """Sessions last active before ``before`` with no live scheduled task (a session
    whose agent still has work planned is not idle, however quiet its chat)."""
    return [sid for (sid,) in conn.execute(
        "SELECT id FROM sessions WHERE last_active < ? AND NOT EXISTS (SELECT 1 FROM "
        "schedules WHERE schedules.session_id = sessions.id AND status IN "
        "('active', 'paused')) ORDER BY last_active", (before,))]


def _session_dirs(state_dir: Path) -> set[str]:
    """The session ids with a directory under ``<state>/sessions`` (a root-owned
    directory: no sandbox can add a name there)."""
    base = state_dir / "sessions"
    if not base.is_dir():
        return set()
    found = set()
    for entry in base.iterdir():
        try:
            found.add(str(validate_session_id(entry.name)))
        except InvalidId:
            continue
    return found


def _make_removable(path: Path) -> None:
    """A directory the agent wrote may be left without the owner's write bit."""
    for directory, _dirs, _files in os.walk(path):
        info = os.lstat(directory)
        if stat.S_ISDIR(info.st_mode):
            os.chmod(directory, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)


def _remove_tree(path: Path) -> None:
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    try:
        shutil.rmtree(path)  # never follows a symlink the agent planted
    except PermissionError:
        _make_removable(path)
        shutil.rmtree(path)


def _remove_files(session_dir: Path, key_dir: Path, workspace: Path | None) -> None:
    _remove_tree(session_dir)
    _remove_tree(key_dir)
    if workspace is not None and workspace.is_dir() and not workspace.is_symlink():
        for entry in list(workspace.iterdir()):
            _remove_tree(entry)


class SessionDeleter:
    """Deletes sessions, one at a time, for the API and the retention sweep."""

    def __init__(self, *, store: HostStore, sessions: Sessions, deps: SessionDeps,
                 forget_key: Callable[[str], bool],
                 keyed_sessions: Callable[[], Iterable[str]] = frozenset) -> None:
        """``forget_key`` is ``KeyStore.delete_session`` and ``keyed_sessions``
        ``KeyStore.session_ids`` (both blocking: run on a thread)."""
        self._store = store
        self._sessions = sessions
        self._deps = deps
        self._forget_key = forget_key
        self._keyed_sessions = keyed_sessions
        self._lock = trio.Lock()

    async def reap_orphans(self) -> list[str]:
        """At start, before any session runs: finish the deletions a crash cut short.
        A key or a session directory whose session has no row in host.db (rows are
        made before either, and deleted before either) is removed. Returns their ids."""
        deps = self._deps
        rows = {s.id for s in await deps.registry.list_sessions()}
        keyed = set(await trio.to_thread.run_sync(lambda: list(self._keyed_sessions())))
        found = keyed | await trio.to_thread.run_sync(_session_dirs, deps.state_dir)
        orphans = sorted(sid for sid in found - rows
                         if deps.quarantine.held(sid) is None)
        for sid in orphans:
            logger.warning("session %s has no row (a deletion cut short); removing what "
                           "is left of it", sid)
            await deps.queues.forget(sid)
            await trio.to_thread.run_sync(self._forget_key, sid)
            layout = SessionLayout.under(deps.state_dir, sid)
            await deps.isolator.release_session(layout.root, None)
            await trio.to_thread.run_sync(_remove_files, layout.root,
                                          deps.settings.key_dir / sid, None)
        return orphans

    async def delete(self, session_id: str, *, by: str, workspace: bool = False
                     ) -> SessionDeleted:
        """Delete the session. Raises the registry's ``NotFound``, :class:`SessionHeld`
        or :class:`WorkspaceShared`."""
        deps = self._deps
        async with self._lock:
            session = await deps.registry.get_session(session_id)
            if deps.quarantine.held(session.id) is not None:
                raise SessionHeld(f"session {session.id} is quarantined; an owner lifts "
                                  "the hold first")
            workspace_dir: Path | None = None
            if workspace:
                group = await deps.registry.get_agent_group(session.agent_group_id)
                siblings = [s.id for s in await deps.registry.list_sessions()
                            if s.agent_group_id == group.id and s.id != session.id]
                if siblings:
                    raise WorkspaceShared(
                        f"the workspace of agent group {group.id} is shared with "
                        f"{len(siblings)} other session(s); delete without the workspace")
                workspace_dir = deps.state_dir / "workspaces" / group.folder
            # Begun, it runs to the end: a caller that goes away (an HTTP client
            # hanging up) must not leave the rows gone and the key and files behind.
            with trio.CancelScope(shield=True):
                await self._remove(session.id, workspace_dir)
            event = SessionDeleted(session.id, session.agent_group_id, workspace_dir
                                   is not None, by)
            deps.events.publish(event)
            logger.info("session %s deleted by %s", session.id, by)
            return event

    async def _remove(self, session_id: str, workspace_dir: Path | None) -> None:
        deps = self._deps
        await deps.queues.forget(session_id)
        # Bounded, as it runs shielded: a sessions actor that is itself stopping
        # fails the deletion here, before anything is gone, rather than hang it.
        with trio.fail_after(STOP_WAIT_S):
            await self._sessions.mailbox.send(StopSession(session_id, "deleted"))
            await self._sessions.wait_retired(session_id)
        await self._store.transaction(_delete_rows, session_id)
        await trio.to_thread.run_sync(self._forget_key, session_id)
        layout = SessionLayout.under(deps.state_dir, session_id)
        await deps.isolator.release_session(layout.root, workspace_dir)
        await trio.to_thread.run_sync(_remove_files, layout.root,
                                      deps.settings.key_dir / session_id, workspace_dir)

    async def delete_idle(self, before_us: int) -> int:
        """The retention policy: delete every session last active before ``before_us``
        that has no live actor, no live scheduled task and no quarantine hold (never
        its workspace). Returns how many went; one that fails is logged and left."""
        cutoff = before_us
        live = set(self._sessions.live_ids())
        deleted = 0
        for session_id in await self._store.call(_idle_sessions, cutoff):
            if session_id in live or self._deps.quarantine.held(session_id) is not None:
                continue
            try:
                await self.delete(session_id, by=RETENTION)
                deleted += 1
            except Exception as exc:  # one broken session must not stop the others
                logger.warning("could not delete idle session %s: %s", session_id,
                               type(exc).__name__)
        return deleted
