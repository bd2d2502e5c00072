"""A model that is rate-limited, failing or refusing, seen through the whole agent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from sandbox_agent.agent import Agent
from sandbox_agent.processing import APOLOGY, APOLOGY_INTERNAL, MAX_TURN_ATTEMPTS
from tests.fakes.model_server import FakeModelServer, Fault
from tests.support.agent import FAST, HostSide


async def test_429_twice_then_success_is_one_normal_reply(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    fake_model.fail_next(429, times=2, retry_after="0")
    await start_agent()
    message = host.enqueue("patience")
    reply = await host.wait_for_reply(message)
    assert reply.content == "echo: patience"
    assert host.ack_of(message) == "completed"
    assert len(fake_model.requests) == 3


async def test_5xx_is_retried_up_to_the_limit_then_apologised_for(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    host.with_config(limits=attrs.evolve(host.config.limits, provider_retries=2,
                                         breaker_failures=100))
    fake_model.fail_next(503, times=3)
    await start_agent()
    message = host.enqueue("anyone?")
    reply = await host.wait_for_reply(message)
    assert reply.content == APOLOGY
    assert host.ack_of(message) == "failed"
    assert len(fake_model.requests) == 3  # one try and two retries

    # The provider is back: the next message is answered normally.
    later = host.enqueue("now?")
    assert (await host.wait_for_reply(later)).content == "echo: now?"


async def test_breaker_opens_and_later_turns_fail_fast_without_a_request(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    host.with_config(limits=attrs.evolve(host.config.limits, provider_retries=5,
                                         breaker_failures=2, breaker_cooldown_s=600.0))
    fake_model.fail_every = Fault(500)
    await start_agent()
    first = host.enqueue("one")
    assert (await host.wait_for_reply(first)).content == APOLOGY
    assert host.ack_of(first) == "failed"
    # The breaker stopped the retry ladder after two failures, not six attempts.
    assert len(fake_model.requests) == 2

    second = host.enqueue("two")
    assert (await host.wait_for_reply(second)).content == APOLOGY
    assert host.ack_of(second) == "failed"
    assert len(fake_model.requests) == 2  # open: no request went out at all


async def test_a_4xx_refusal_is_not_retried(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    fake_model.fail_next(403)
    await start_agent()
    message = host.enqueue("forbidden fruit")
    assert (await host.wait_for_reply(message)).content == APOLOGY
    assert host.ack_of(message) == "failed"
    assert len(fake_model.requests) == 1


async def test_context_rows_of_a_failed_turn_stay_for_the_next_one(
        host: HostSide, fake_model: FakeModelServer, start_agent: Callable[..., Any]) -> None:
    host.with_config(limits=attrs.evolve(host.config.limits, provider_retries=0))
    fake_model.fail_next(500)
    await start_agent()
    context = host.enqueue("fyi: the cat is asleep", engages=False)
    failed = host.enqueue("first try")
    await host.wait_for_reply(failed)
    assert host.ack_of(context) == "processing"

    second = host.enqueue("second try")
    reply = await host.wait_for_reply(second)
    assert "fyi: the cat is asleep" in reply.content
    assert host.ack_of(context) == "completed"


async def test_a_row_interrupted_three_times_is_failed_not_rerun_forever(
        host: HostSide, fake_model: FakeModelServer) -> None:
    fake_model.hold()  # every turn hangs until the "sandbox" is killed
    message = host.enqueue("the message that kills the sandbox")
    for life in range(MAX_TURN_ATTEMPTS):
        async with trio.open_nursery() as sandbox:
            await sandbox.start(Agent(host.config, host.keys, FAST).run)
            await fake_model.wait_for_requests(life + 1)
            sandbox.cancel_scope.cancel()  # killed mid-turn
        assert host.replies_to(message) == []
    fake_model.release()

    async with trio.open_nursery() as sandbox:
        await sandbox.start(Agent(host.config, host.keys, FAST).run)
        reply = await host.wait_for_reply(message)
        later = await host.wait_for_reply(host.enqueue("are you ok?"))
        sandbox.cancel_scope.cancel()
    assert reply.content == APOLOGY_INTERNAL and host.ack_of(message) == "failed"
    assert later.content == "echo: are you ok?"
    assert len(fake_model.requests) == MAX_TURN_ATTEMPTS + 1  # no fourth try of the first
