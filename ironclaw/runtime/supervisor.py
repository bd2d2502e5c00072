"""Restart a failing child task with exponential backoff, and park it when it keeps failing.

The child is any async callable that accepts ``task_status`` (an actor's ``run`` method,
or a ``functools.partial`` of ``run_child_process``). The supervisor starts it in a
nursery of its own, so a child's ``Exception`` never reaches the supervisor's parent: it
becomes a ``supervisor.child_failed`` event and, after a backoff delay, a restart.
``BaseException``\\s that are not ``Exception``\\s (``Cancelled``, ``KeyboardInterrupt``,
``SystemExit``) are not failures of the child but of the world, and propagate.

Lifecycle:

* the child calls ``task_status.started()``: ``child_started``; if it then stays up for
  ``healthy_after`` seconds the consecutive-failure count goes back to zero
  (``failures_reset``);
* the child raises: ``child_failed``, then ``child_restarting`` and a sleep of
  ``initial * factor ** (failures - 1)`` seconds, capped at ``cap``;
* the ``max_failures``-th consecutive failure: ``child_parked``; the child stays down
  until :meth:`Supervisor.resume` (``child_resumed``), which restarts it at once;
* the child returns normally: ``child_exited`` and the supervisor's ``run`` returns
  too. A child that is done is not restarted.

A restart calls the same callable again. If the child is a long-lived object whose state
a crash may have corrupted, pass a function that builds a fresh one each time.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Iterator
from typing import Any, ClassVar, Protocol

import attrs
import trio

from ironclaw.runtime.events import DiscardEvents, EventSink

__all__ = [
    "BackoffPolicy",
    "Child",
    "ChildExited",
    "ChildFailed",
    "ChildParked",
    "ChildRestarting",
    "ChildResumed",
    "ChildStarted",
    "FailuresReset",
    "Supervisor",
    "SupervisorState",
    "summarize_error",
]

logger = logging.getLogger(__name__)

_MAX_SUMMARY_CHARS = 1000


class Child(Protocol):
    """What a supervisor can run: an async callable taking ``task_status``."""

    def __call__(self, *, task_status: trio.TaskStatus[Any]) -> Awaitable[object]: ...


@attrs.frozen
class BackoffPolicy:
    """How long to wait before restarting, and when to give up."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    # None means never park: keep retrying every ``cap`` seconds forever.
    max_failures: int | None = 5
    healthy_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0 or self.cap <= 0:
            raise ValueError("initial and cap must be positive")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError("max_failures must be >= 1 or None")
        if self.healthy_after < 0:
            raise ValueError("healthy_after must be >= 0")

    def delay(self, consecutive_failures: int) -> float:
        """Seconds to wait after the given number of consecutive failures (>= 1)."""
        if consecutive_failures < 1:
            raise ValueError("consecutive_failures must be >= 1")
        try:
            delay = self.initial * self.factor ** (consecutive_failures - 1)
        except OverflowError:  # a child that has failed thousands of times in a row
            return self.cap
        return min(delay, self.cap)

    def should_park(self, consecutive_failures: int) -> bool:
        return self.max_failures is not None and consecutive_failures >= self.max_failures


class SupervisorState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    PARKED = "parked"
    EXITED = "exited"


@attrs.frozen
class ChildStarted:
    type: ClassVar[str] = "supervisor.child_started"
    child: str
    attempt: int


@attrs.frozen
class ChildFailed:
    type: ClassVar[str] = "supervisor.child_failed"
    child: str
    error: str
    consecutive_failures: int


@attrs.frozen
class ChildRestarting:
    type: ClassVar[str] = "supervisor.child_restarting"
    child: str
    delay: float
    consecutive_failures: int


@attrs.frozen
class ChildParked:
    type: ClassVar[str] = "supervisor.child_parked"
    child: str
    consecutive_failures: int
    last_error: str


@attrs.frozen
class ChildResumed:
    type: ClassVar[str] = "supervisor.child_resumed"
    child: str


@attrs.frozen
class FailuresReset:
    type: ClassVar[str] = "supervisor.failures_reset"
    child: str
    previous_failures: int


@attrs.frozen
class ChildExited:
    type: ClassVar[str] = "supervisor.child_exited"
    child: str


def _leaf_exceptions(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaf_exceptions(inner)
    else:
        yield error


def summarize_error(error: BaseException) -> str:
    """One line naming every leaf exception, e.g. ``"OSError: disk full"``."""
    parts = [
        f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
        for leaf in _leaf_exceptions(error)
    ]
    summary = "; ".join(parts)
    if len(summary) > _MAX_SUMMARY_CHARS:
        summary = summary[: _MAX_SUMMARY_CHARS - 3] + "..."
    return summary


class Supervisor:
    """Runs one child, restarting it on failure. Start with ``nursery.start(sup.run)``."""

    def __init__(
        self,
        name: str,
        child: Child,
        *,
        policy: BackoffPolicy | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.name = name
        self._child = child
        self.policy = BackoffPolicy() if policy is None else policy
        self._events: EventSink = DiscardEvents() if events is None else events
        self._state = SupervisorState.IDLE
        self._attempts = 0
        self._consecutive_failures = 0
        self._last_error: BaseException | None = None
        self._resume = trio.Event()

    @property
    def state(self) -> SupervisorState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def attempts(self) -> int:
        """How many times the child has been started (successfully or not)."""
        return self._attempts

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    def resume(self) -> bool:
        """Restart a parked child now, with a clean failure count.

        Returns False, doing nothing, if the child is not parked.
        """
        if self._state is not SupervisorState.PARKED:
            return False
        self._resume.set()
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until the child exits cleanly or the supervisor is cancelled.

        Reports started at once: the child's own start-up may fail and be retried, and
        that must not fail the caller's ``nursery.start``.
        """
        if self._state not in (SupervisorState.IDLE, SupervisorState.EXITED):
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        task_status.started()
        while True:
            failure = await self._run_child_once()
            if failure is None:
                self._state = SupervisorState.EXITED
                self._events.publish(ChildExited(self.name))
                return
            self._record_failure(failure)
            if self.policy.should_park(self._consecutive_failures):
                await self._park(summarize_error(failure))
                continue
            delay = self.policy.delay(self._consecutive_failures)
            self._state = SupervisorState.BACKING_OFF
            self._events.publish(ChildRestarting(self.name, delay, self._consecutive_failures))
            await trio.sleep(delay)

    async def _run_child_once(self) -> BaseExceptionGroup[Exception] | None:
        self._attempts += 1
        self._state = SupervisorState.STARTING
        failure: BaseExceptionGroup[Exception] | None = None
        try:
            async with trio.open_nursery() as nursery:
                health_timer = trio.CancelScope()
                await nursery.start(self._call_child, health_timer)
                self._state = SupervisorState.RUNNING
                self._events.publish(ChildStarted(self.name, self._attempts))
                nursery.start_soon(self._reset_failures_when_healthy, health_timer)
        except* Exception as group:
            failure = group
        return failure

    async def _call_child(
        self, health_timer: trio.CancelScope, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        try:
            await self._child(task_status=task_status)
        finally:
            # The timer shares the child's nursery; without this the nursery would wait
            # for it even though the child is gone.
            health_timer.cancel()

    async def _reset_failures_when_healthy(self, health_timer: trio.CancelScope) -> None:
        with health_timer:
            await trio.sleep(self.policy.healthy_after)
            if self._consecutive_failures:
                previous, self._consecutive_failures = self._consecutive_failures, 0
                self._events.publish(FailuresReset(self.name, previous))

    def _record_failure(self, failure: BaseExceptionGroup[Exception]) -> None:
        self._consecutive_failures += 1
        self._last_error = failure
        summary = summarize_error(failure)
        logger.warning(
            "supervised child %r failed (%d consecutive): %s",
            self.name,
            self._consecutive_failures,
            summary,
            exc_info=failure,
        )
        self._events.publish(ChildFailed(self.name, summary, self._consecutive_failures))

    async def _park(self, last_error: str) -> None:
        self._state = SupervisorState.PARKED
        self._resume = trio.Event()
        logger.error(
            "supervised child %r parked after %d consecutive failures",
            self.name,
            self._consecutive_failures,
        )
        self._events.publish(ChildParked(self.name, self._consecutive_failures, last_error))
        await self._resume.wait()
        self._consecutive_failures = 0
        self._events.publish(ChildResumed(self.name))
