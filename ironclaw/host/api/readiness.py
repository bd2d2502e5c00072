"""``/readyz``: is the control plane able to do its work right now?

Each check is bounded by ``CHECK_TIMEOUT`` and they run concurrently:

* ``store``: a ``SELECT 1`` round trip through host.db's one thread;
* ``gateway``: a round trip through the gateway actor's mailbox (asking it to retry
  the apply of a change id that cannot exist, which it answers with NoSuchChange), so a
  stopped or wedged gateway is not ready;
* ``delivery`` and ``sessions``: their actors are running;
* ``local_channel``: the local channel's receive side is being served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ironclaw.host.gateway import NoSuchChange

if TYPE_CHECKING:
    from ironclaw.host.app import ControlPlaneHandles

CHECK_TIMEOUT = 2.0
FRESH_FOR = 1.0  # /readyz is open to anyone: one probe a second, however many ask
PROBE_CHANGE_ID = "chg_readyz_probe_never_a_change"

Check = tuple[bool, str | None]


def _select_one(conn: Any) -> int:
    return int(conn.execute("SELECT 1").fetchone()[0])


def running(actor: object) -> bool:
    """An actor is running while its nursery is open. Prefer a public ``running``
    flag where the actor has one."""
    flag = getattr(actor, "running", None)
    if isinstance(flag, bool):
        return flag
    return getattr(actor, "_nursery", None) is not None


async def _store(handles: ControlPlaneHandles) -> Check:
    ok = await handles.store.call(_select_one) == 1
    return ok, None if ok else "host.db did not answer"


async def _gateway(handles: ControlPlaneHandles) -> Check:
    try:
        await handles.gateway.retry_apply(PROBE_CHANGE_ID)
    except NoSuchChange:
        return True, None
    return False, "the gateway gave an unexpected answer"


async def _actor(actor: object, name: str) -> Check:
    await trio.lowlevel.checkpoint()
    ok = running(actor)
    return ok, None if ok else f"the {name} actor is not running"


async def _local(handles: ControlPlaneHandles) -> Check:
    await trio.lowlevel.checkpoint()
    ok = handles.local.serving
    return ok, None if ok else "the local channel is not being served"


async def readiness(handles: ControlPlaneHandles) -> dict[str, Check]:
    checks: dict[str, Callable[[], Awaitable[Check]]] = {
        "store": lambda: _store(handles),
        "gateway": lambda: _gateway(handles),
        "delivery": lambda: _actor(handles.delivery, "delivery"),
        "sessions": lambda: _actor(handles.sessions, "sessions"),
        "local_channel": lambda: _local(handles),
    }
    results: dict[str, Check] = {}

    async def run(name: str, check: Callable[[], Awaitable[Check]]) -> None:
        result: Check = (False, "timed out")
        with trio.move_on_after(CHECK_TIMEOUT):
            try:
                result = await check()
            except Exception as exc:
                result = (False, type(exc).__name__)
        results[name] = result

    async with trio.open_nursery() as nursery:
        for name, check in checks.items():
            nursery.start_soon(run, name, check)
    return {name: results[name] for name in checks}


class Readiness:
    """:func:`readiness`, answered from a result at most ``FRESH_FOR`` seconds old,
    with concurrent askers sharing one probe, so the unauthenticated probe cannot be
    used to load the gateway's mailbox or host.db's thread."""

    def __init__(self, handles: ControlPlaneHandles) -> None:
        self._handles = handles
        self._lock = trio.Lock()
        self._result: dict[str, Check] | None = None
        self._at = 0.0

    async def check(self) -> dict[str, Check]:
        async with self._lock:
            if self._result is None or trio.current_time() - self._at > FRESH_FOR:
                self._result = await readiness(self._handles)
                self._at = trio.current_time()
            return self._result
