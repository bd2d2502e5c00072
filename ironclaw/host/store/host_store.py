"""The store actor: the one owner of host.db's connection.

Blocking SQLite work never runs on the Trio thread. Every call is shipped to a worker
thread through a capacity limiter of one, so calls are serialised (one connection,
one transaction at a time) and the event loop keeps running while SQLite fsyncs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import trio

from ironclaw.host.store.database import Connection, StoreError, open_database

P = ParamSpec("P")
T = TypeVar("T")


class HostStore:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._conn: Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

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
        """Run ``fn(connection, *args)`` inside BEGIN IMMEDIATE … COMMIT."""
        return await self.call(_in_transaction, fn, *args)


def _in_transaction(conn: Connection, fn: Callable[..., T], *args: object) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


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
