"""Group commit in host.db: transactions that arrive while the store is busy commit
together, one savepoint each; one that fails is rolled back alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.host.store import open_host_store

KEY = bytes(range(32))


def _put(conn: Any, name: str) -> str:
    conn.execute("INSERT INTO grouped (k) VALUES (?)", (name,))
    return name


def _fail(conn: Any, name: str) -> None:
    conn.execute("INSERT INTO grouped (k) VALUES (?)", (name,))
    raise ValueError("this one is refused")


def _names(conn: Any) -> list[str]:
    return sorted(k for (k,) in conn.execute("SELECT k FROM grouped"))


async def test_concurrent_transactions_share_commits_and_fail_alone(tmp_path: Path) -> None:
    async with open_host_store(tmp_path / "host.db", KEY) as store:
        await store.call(lambda conn: conn.execute("CREATE TABLE grouped (k TEXT PRIMARY KEY)"))
        before = store.groups
        results: dict[str, object] = {}

        async def put(name: str) -> None:
            results[name] = await store.transaction(_put, name)

        async def fail(name: str) -> None:
            with pytest.raises(ValueError, match="refused"):
                await store.transaction(_fail, name)
            results[name] = "refused"

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(fail if i == 7 else put, f"k{i:02}")
        assert results == {f"k{i:02}": ("refused" if i == 7 else f"k{i:02}")
                           for i in range(20)}
        assert await store.call(_names) == [f"k{i:02}" for i in range(20) if i != 7]
        # Twenty writers, far fewer commits: all but the first waited and grouped.
        assert store.groups - before < 20


async def test_a_transaction_cancelled_while_waiting_never_runs(tmp_path: Path) -> None:
    async with open_host_store(tmp_path / "host.db", KEY) as store:
        await store.call(lambda conn: conn.execute("CREATE TABLE grouped (k TEXT PRIMARY KEY)"))
        hold, held = trio.Event(), trio.Event()

        def slow(conn: Any) -> None:
            trio.from_thread.run_sync(held.set)
            trio.from_thread.run(hold.wait)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.transaction, slow)
            await held.wait()
            with trio.move_on_after(0.01):
                await store.transaction(_put, "late")  # queued behind slow, cancelled
            hold.set()
        await store.transaction(_put, "after")
        assert await store.call(_names) == ["after"]
