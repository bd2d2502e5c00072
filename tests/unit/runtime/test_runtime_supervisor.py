"""Supervisor behaviour under a virtual clock: backoff, parking, resets, cancellation."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.lowlevel
import trio.testing

from ironclaw.runtime import (
    BackoffPolicy,
    ChildExited,
    ChildFailed,
    ChildParked,
    ChildRestarting,
    ChildResumed,
    ChildStarted,
    Envelope,
    EventBus,
    FailuresReset,
    Supervisor,
    SupervisorState,
)
from tests.support.events import RecordingSink

# Virtual seconds: a supervisor that never gets there fails fast instead of hanging.
WAIT_LIMIT = 24 * 3600


class Boom(Exception):
    pass


async def fail_after_start(*, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    await trio.lowlevel.checkpoint()
    raise Boom("crashed")


def relative(times: list[float]) -> list[float]:
    return [round(at - times[0], 6) for at in times]


async def test_restart_delays_double_from_one_second_and_park_after_five_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    supervisor = Supervisor("flaky", fail_after_start, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildParked)
        # Parked means parked: an hour later nobody has restarted it.
        await trio.sleep(3600)
        assert supervisor.state is SupervisorState.PARKED
        nursery.cancel_scope.cancel()

    assert relative(sink.times_of(ChildStarted)) == [0, 1, 3, 7, 15]
    assert [event.delay for event in sink.of(ChildRestarting)] == [1, 2, 4, 8]
    assert [event.consecutive_failures for event in sink.of(ChildFailed)] == [1, 2, 3, 4, 5]
    (parked,) = sink.of(ChildParked)
    assert parked == ChildParked("flaky", consecutive_failures=5, last_error="Boom: crashed")
    assert supervisor.attempts == 5


async def test_restart_delay_is_capped_at_five_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    supervisor = Supervisor(
        "stubborn", fail_after_start, policy=BackoffPolicy(max_failures=None), events=sink
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildStarted, count=13)
        nursery.cancel_scope.cancel()

    expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    # The 13th child may crash again before the test gets to cancel; ignore what follows.
    assert [event.delay for event in sink.of(ChildRestarting)][:12] == expected
    starts = sink.times_of(ChildStarted)
    gaps = [round(later - earlier, 6) for earlier, later in itertools.pairwise(starts)]
    assert gaps == expected
    assert sink.of(ChildParked) == []


def test_backoff_policy_defaults_and_overflow() -> None:
    policy = BackoffPolicy()
    assert (policy.initial, policy.factor, policy.cap) == (1.0, 2.0, 300.0)
    assert (policy.max_failures, policy.healthy_after) == (5, 60.0)
    assert [policy.delay(n) for n in (1, 2, 3, 9, 10, 11)] == [1, 2, 4, 256, 300, 300]
    # A child that has failed thousands of times must not crash the supervisor's maths.
    assert policy.delay(100_000) == 300
    assert not policy.should_park(4)
    assert policy.should_park(5)
    with pytest.raises(ValueError):
        BackoffPolicy(factor=0.5)
    with pytest.raises(ValueError):
        BackoffPolicy(max_failures=0)


async def test_crashing_child_is_restarted_and_then_keeps_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    attempts = 0

    async def crashes_twice(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        task_status.started()
        if attempts <= 2:
            raise Boom(f"crash {attempts}")
        await trio.sleep_forever()

    supervisor = Supervisor("worker", crashes_twice, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildStarted, count=3)
        await trio.sleep(10)
        assert supervisor.state is SupervisorState.RUNNING
        nursery.cancel_scope.cancel()

    assert attempts == 3
    assert [type(event).__name__ for _, event in sink.records] == [
        "ChildStarted",
        "ChildFailed",
        "ChildRestarting",
        "ChildStarted",
        "ChildFailed",
        "ChildRestarting",
        "ChildStarted",
    ]
    assert [event.error for event in sink.of(ChildFailed)] == ["Boom: crash 1", "Boom: crash 2"]


async def test_child_failing_before_started_is_retried_without_failing_nursery_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    attempts = 0

    async def broken_startup(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("port in use")
        task_status.started()
        await trio.sleep_forever()

    supervisor = Supervisor("listener", broken_startup, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)  # must not raise OSError
        await sink.wait_for(ChildStarted)
        nursery.cancel_scope.cancel()

    assert [event.error for event in sink.of(ChildFailed)] == ["OSError: port in use"]
    assert sink.of(ChildStarted) == [ChildStarted("listener", attempt=2)]


async def _fails_after(uptimes: list[float], *, task_status: trio.TaskStatus[None]) -> None:
    """Stays up for the next listed number of seconds, then crashes; forever once empty."""
    task_status.started()
    if not uptimes:
        await trio.sleep_forever()
    await trio.sleep(uptimes.pop(0))
    raise Boom("died")


async def test_failure_count_resets_once_child_has_been_healthy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    # Four quick crashes, then one run that outlives healthy_after before crashing.
    uptimes: list[float] = [0, 0, 0, 0, 61, 0]

    async def child(*, task_status: trio.TaskStatus[None]) -> None:
        await _fails_after(uptimes, task_status=task_status)

    supervisor = Supervisor("recovering", child, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildStarted, count=7)
        nursery.cancel_scope.cancel()

    reset_at = sink.times_of(FailuresReset)
    fifth_start = sink.times_of(ChildStarted)[4]
    assert sink.of(FailuresReset) == [FailuresReset("recovering", previous_failures=4)]
    assert reset_at == [fifth_start + 60]
    # Counting started again from zero: 1 s backoff, and no parking at the 6th failure.
    assert [event.delay for event in sink.of(ChildRestarting)] == [1, 2, 4, 8, 1, 2]
    assert sink.of(ChildParked) == []


async def test_failure_count_is_not_reset_by_an_uptime_shorter_than_healthy_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    uptimes: list[float] = [0, 0, 0, 0, 59]

    async def child(*, task_status: trio.TaskStatus[None]) -> None:
        await _fails_after(uptimes, task_status=task_status)

    supervisor = Supervisor("sickly", child, events=sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildParked)
        nursery.cancel_scope.cancel()

    assert sink.of(FailuresReset) == []
    assert sink.of(ChildParked)[0].consecutive_failures == 5


async def test_cancelling_the_supervisor_cancels_the_child_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    child_cleaned_up = False
    child_saw_cancel = False

    async def long_lived(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal child_cleaned_up, child_saw_cancel
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            child_saw_cancel = True
            raise
        finally:
            child_cleaned_up = True

    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    supervisor = Supervisor("service", long_lived, events=sink)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await sink.wait_for(ChildStarted)
            scope.cancel()

    assert scope.cancelled_caught
    assert child_saw_cancel and child_cleaned_up
    # Cancellation is not a failure: nothing was reported as failed or restarted.
    assert sink.of(ChildFailed) == [] and sink.of(ChildRestarting) == []


async def test_cancelling_during_backoff_stops_further_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    supervisor = Supervisor("flaky", fail_after_start, events=sink)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await sink.wait_for(ChildRestarting)
            assert supervisor.state is SupervisorState.BACKING_OFF
            scope.cancel()
    await trio.sleep(3600)
    assert scope.cancelled_caught
    assert len(sink.of(ChildStarted)) == 1


async def test_resume_unparks_and_restarts_with_a_clean_slate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)
    fixed = False

    async def fails_until_fixed(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if not fixed:
            raise Boom("still broken")
        await trio.sleep_forever()

    supervisor = Supervisor("needs-operator", fails_until_fixed, events=sink)
    async with trio.open_nursery() as nursery:
        assert supervisor.resume() is False  # nothing to resume yet
        await nursery.start(supervisor.run)
        await sink.wait_for(ChildParked)
        fixed = True
        parked_at = trio.current_time()
        assert supervisor.resume() is True
        await sink.wait_for(ChildStarted, count=6)
        assert supervisor.state is SupervisorState.RUNNING
        assert supervisor.consecutive_failures == 0
        assert supervisor.resume() is False  # running, not parked
        nursery.cancel_scope.cancel()

    assert sink.of(ChildResumed) == [ChildResumed("needs-operator")]
    # Restarted at once, not after a backoff.
    assert sink.times_of(ChildStarted)[-1] == parked_at


async def test_child_that_returns_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink(wait_limit=WAIT_LIMIT)

    async def finishes(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(5)

    supervisor = Supervisor("batch", finishes, events=sink)
    await supervisor.run()

    assert supervisor.state is SupervisorState.EXITED
    assert supervisor.attempts == 1
    assert sink.of(ChildExited) == [ChildExited("batch")]


class Fatal(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit: not the child's failure to absorb."""


async def test_base_exceptions_propagate_instead_of_being_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def dies_hard(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        raise Fatal

    supervisor = Supervisor("doomed", dies_hard)
    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)

    assert caught.value.subgroup(Fatal) is not None
    assert supervisor.attempts == 1


async def test_supervisor_events_flow_into_the_event_bus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = EventBus()
    supervisor = Supervisor("flaky", fail_after_start, events=bus)
    async with bus.subscribe("supervisor.*") as subscription, trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        types: list[str] = []
        async for item in subscription:
            assert isinstance(item, Envelope)
            types.append(item.type)
            if item.type == "supervisor.child_parked":
                break
        nursery.cancel_scope.cancel()

    assert types.count("supervisor.child_failed") == 5
    assert types[-2:] == ["supervisor.child_failed", "supervisor.child_parked"]
