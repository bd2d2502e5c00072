"""Rotating one session's keys: new SQLCipher keys for its two queue files.

In order, each step durable before the next:

1. stage: the key store keeps a successor secret beside the current one
   (``KeyStore.stage_session_rotation``);
2. stop: the session's sandbox is stopped and none is started for it until the end
   (``Sessions.paused``), and the host's inbound writer is closed and kept closed
   (``SessionQueues.writer_closed``): neither file has a writer;
3. rekey ``inbound.db``, then ``outbound.db`` (:mod:`.rekey`: copy, re-encrypt, swap);
4. verify both open under the successor, then commit: the successor becomes the
   session's secret and the old one is forgotten;
5. resume: the session is woken, and its sandbox starts with the new key file.

A crash at any step leaves the store holding both secrets, and each file under one
of them. :meth:`SessionKeyRotator.recover`, at the next start before any session
runs, finishes every such rotation (a file still under the old key is re-keyed); one
whose file opens under neither is rolled back, keeping the old key, and logged. A
failure while the plane runs is handled the same way at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs
import trio

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.layout import SessionLayout
from ironclaw.contract.queue.errors import QueueError
from ironclaw.contract.schema import INBOUND_DDL, OUTBOUND_DDL

from ..events import SessionKeyRotated
from . import rekey
from .manager import Sessions
from .session_actor import SessionDeps

logger = logging.getLogger(__name__)


class SessionKeyCustody(Protocol):
    """The key store's side of a rotation (blocking: run on a thread)."""

    def stage_session_rotation(self, session_id: str) -> tuple[bytes, bytes]: ...

    def staged_rotations(self) -> Mapping[str, tuple[bytes, bytes]]: ...

    def finish_session_rotation(self, session_id: str, *, commit: bool) -> None: ...


class RotationFailed(Exception):
    """The files could not be re-keyed; the session keeps its old key."""


@attrs.frozen
class _Files:
    inbound: rekey.Rekeyed
    outbound: rekey.Rekeyed


def rekey_session_files(deps: SessionDeps, session_id: str, old: bytes, new: bytes, *,
                        strict: bool = True) -> _Files | None:
    """Steps 3 and 4, blocking. Raises ``QueueError`` if a file opens under neither
    key (``OSError`` if it cannot be swapped); not ``strict`` (a rollback), such a
    file is left as it is."""
    layout = SessionLayout.under(deps.state_dir, session_id)
    was, now = SessionKeys.from_secret(old), SessionKeys.from_secret(new)
    queues = layout.queues
    done = []
    for path, before, after, ddl in (
            (queues.inbound_db, was.inbound, now.inbound, INBOUND_DDL),
            (queues.outbound_db, was.outbound, now.outbound, OUTBOUND_DDL)):
        try:
            done.append(rekey.rekey_queue_file(path, layout.root, before, after, ddl))
        except (QueueError, OSError) as exc:
            if strict:
                raise
            logger.error("session %s: %s left as it is: %s", session_id, path.name,
                         type(exc).__name__)
    return _Files(*done) if len(done) == 2 else None


class SessionKeyRotator:
    """Rotates session keys, one at a time, for the API; finishes cut-short ones."""

    def __init__(self, *, deps: SessionDeps, sessions: Sessions, custody: SessionKeyCustody,
                 rekey_files: Callable[[SessionDeps, str, bytes, bytes], object]
                 = rekey_session_files) -> None:
        self._deps = deps
        self._sessions = sessions
        self._custody = custody
        self._rekey_files = rekey_files  # a test swaps in one that fails part way
        self._lock = trio.Lock()

    async def rotate(self, session_id: str, *, by: str) -> SessionKeyRotated:
        """Rotate the session's keys. Raises the registry's ``NotFound``, or
        :class:`RotationFailed` (the old key stays)."""
        deps = self._deps
        async with self._lock:
            session = await deps.registry.get_session(session_id)
            # Begun, it runs to the end: a caller that hangs up must not leave the
            # session stopped with its files half re-keyed.
            with trio.CancelScope(shield=True):
                old, new = await trio.to_thread.run_sync(
                    self._custody.stage_session_rotation, session.id)
                async with self._sessions.paused(session.id, "key rotation"), \
                        deps.queues.writer_closed(session.id):
                    await self._settle(session.id, old, new)
            event = SessionKeyRotated(session.id, session.agent_group_id, by)
            deps.events.publish(event)
            logger.info("session %s keys rotated by %s", session.id, by)
            return event

    async def _settle(self, session_id: str, old: bytes, new: bytes) -> None:
        """Re-key the files, then commit; or, if they cannot be, roll back."""
        try:
            await trio.to_thread.run_sync(self._rekey_files, self._deps, session_id, old,
                                          new)
        except (QueueError, OSError) as exc:  # OSError: the swap itself failed
            await trio.to_thread.run_sync(self._rollback, session_id, old, new)
            raise RotationFailed(f"session {session_id}: {exc}") from None
        await trio.to_thread.run_sync(
            lambda: self._custody.finish_session_rotation(session_id, commit=True))

    def _rollback(self, session_id: str, old: bytes, new: bytes) -> None:
        """Put back under the old key what was already re-keyed, then drop the
        successor. A file that opens under neither key is beyond saving either way."""
        rekey_session_files(self._deps, session_id, new, old, strict=False)
        self._custody.finish_session_rotation(session_id, commit=False)

    async def recover(self) -> list[str]:
        """At start, before any session runs: finish the rotations a crash cut short.
        Returns the sessions finished."""
        staged = await trio.to_thread.run_sync(self._custody.staged_rotations)
        finished = []
        for session_id, (old, new) in sorted(staged.items()):
            layout = SessionLayout.under(self._deps.state_dir, session_id)
            await trio.to_thread.run_sync(rekey.remove_scratch, (
                layout.root, layout.queues.inbound_dir, layout.queues.outbound_dir))
            try:
                await self._settle(session_id, old, new)
            except RotationFailed as exc:
                logger.error("a key rotation cut short could not be finished; the old "
                             "key is kept: %s", exc)
                continue
            logger.warning("session %s: finished a key rotation a crash cut short",
                           session_id)
            finished.append(session_id)
        return finished
