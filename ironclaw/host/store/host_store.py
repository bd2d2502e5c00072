"""The store actor: the one owner of host.db's connection.

Blocking SQLite work never runs on the Trio thread. Every call is shipped to a worker
thread through a capacity limiter of one, so calls are serialised (one connection,
one transaction at a time) and the event loop keeps running while SQLite fsyncs.

Transactions commit in groups: those that arrive while the store's thread is busy
wait together and then run in one ``BEGIN IMMEDIATE … COMMIT``, each inside its own
savepoint. A transaction that raises is rolled back to its savepoint alone (its
caller gets the exception, the others commit); a failed COMMIT fails the whole group.
Each caller returns only after the group's COMMIT, so an acknowledged write is as
durable as before; a busy plane pays one fsync per group instead of one per write.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import outcome
import trio

from ironclaw.host.store.database import Connection, StoreError, open_database

P = ParamSpec("P")
T = TypeVar("T")

# A group takes at most this many transactions; the rest wait for the next one.
MAX_GROUP = 256


@attrs.define
class _Pending:
    fn: Callable[..., Any]
    args: tuple[object, ...]
    done: trio.Event = attrs.Factory(trio.Event)
    result: outcome.Outcome[Any] | None = None


class HostStore:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._conn: Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._queued: list[_Pending] = []
        self._committing = False
        self._between_groups = trio.Event()
        self.groups = 0  # groups committed, for tests and the bench

    async def run(self, *, task_status: trio.TaskStatus[HostStore] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Open, serve until cancelled, close."""
        await self.open()
        try:
            task_status.started(self)
            await trio.sleep_forever()
        finally:
            await self.aclose()

    async def open(self) -> None:
        self._conn = await trio.to_thread.run_sync(open_database, self.path, self._key,
                                                   limiter=self._limiter)

    async def aclose(self) -> None:
        """Shielded, so a cancelled control plane still leaves host.db closed."""
        with trio.CancelScope(shield=True):
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(connection, *args)`` on the store's thread."""
        conn = self._conn
        if conn is None:
            raise StoreError("the host store is not open")
        return await trio.to_thread.run_sync(lambda: fn(conn, *args), limiter=self._limiter)

    async def transaction(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(connection, *args)`` inside a committed transaction (one group's)."""
        if self._conn is None:
            raise StoreError("the host store is not open")
        pending = _Pending(fn, args)
        self._queued.append(pending)
        while not pending.done.is_set():
            if self._committing:
                try:
                    await self._between_groups.wait()
                except BaseException:
                    # Cancelled before its group began: it never runs. (Once in a
                    # group it commits with it, as a thread once started finishes.)
                    with contextlib.suppress(ValueError):
                        self._queued.remove(pending)
                    raise
                continue
            # Whoever finds the store idle commits what is queued, its own included.
            # Shielded: the others wait on it, and a group that started finishes.
            self._committing = True
            self._between_groups = trio.Event()
            try:
                with trio.CancelScope(shield=True):
                    group = self._queued[:MAX_GROUP]
                    del self._queued[:MAX_GROUP]
                    await self._commit_group(group)
            finally:
                self._committing = False
                self._between_groups.set()
        assert pending.result is not None
        return pending.result.unwrap()  # type: ignore[no-any-return]

    async def _commit_group(self, group: list[_Pending]) -> None:
        try:
            await self.call(_in_group, group)
            self.groups += 1
        except BaseException as exc:  # the COMMIT (or the store) failed: all of it did
            for pending in group:
                pending.result = outcome.Error(exc)
        for pending in group:
            pending.done.set()


def _in_group(conn: Connection, group: list[_Pending]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for index, pending in enumerate(group):
            conn.execute(f"SAVEPOINT t{index}")
            try:
                value = pending.fn(conn, *pending.args)
            except Exception as exc:
                conn.execute(f"ROLLBACK TO t{index}")
                pending.result = outcome.Error(exc)
            else:
                pending.result = outcome.Value(value)
            conn.execute(f"RELEASE t{index}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.asynccontextmanager
async def open_host_store(path: Path, key: bytes) -> AsyncIterator[HostStore]:
    """For callers that do not run the whole actor tree (tools, tests). The store owns
    no task of its own, so no nursery is needed and errors arrive unwrapped."""
    store = HostStore(path, key)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()
