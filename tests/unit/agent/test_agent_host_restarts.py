"""What the agent does when the host, not the message, cuts a turn short: the control
plane stopped the sandbox or died (its model socket refuses), and then launched a new
agent. Nothing of that may cost the message its answer, or answer it twice under two
idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from sandbox_agent.agent import Agent
from sandbox_agent.processing import MAX_TURN_ATTEMPTS
from sandbox_agent.tools import turn_row_id
from tests.fakes.model_server import FakeModelServer
from tests.support.agent import FAST, HostSide


async def test_turns_cut_short_by_the_host_do_not_fail_the_message(
        host: HostSide, fake_model: FakeModelServer) -> None:
    """As ``test_a_row_interrupted_three_times_is_failed_not_rerun_forever``, but each
    relaunch is one the host says it caused (it stopped the sandbox, or died)."""
    host.with_config(previous_run_blameless=True)
    fake_model.hold()  # every turn hangs until the "sandbox" is stopped
    message = host.enqueue("asked while the plane kept restarting")
    for life in range(MAX_TURN_ATTEMPTS + 1):
        async with trio.open_nursery() as sandbox:
            await sandbox.start(Agent(host.config, host.keys, FAST).run)
            with trio.fail_after(10):  # a row failed for its attempts asks no model
                await fake_model.wait_for_requests(life + 1)
            sandbox.cancel_scope.cancel()  # the host stops it mid-turn
    fake_model.release()
    async with trio.open_nursery() as sandbox:
        await sandbox.start(Agent(host.config, host.keys, FAST).run)
        reply = await host.wait_for_reply(message)
        sandbox.cancel_scope.cancel()
    assert reply.content == "echo: asked while the plane kept restarting"
    assert host.ack_of(message) == "completed"


async def test_nobody_on_the_model_socket_leaves_the_turn_for_the_next_agent(
        host: HostSide, nursery: trio.Nursery, start_agent: Callable[..., Any]) -> None:
    """The control plane is dead: its model socket is gone. The agent must not answer
    with an apology (the model was never asked), must not spend the message's attempts,
    and answers once a plane serves the socket again."""
    agent: Agent = await start_agent()
    message = host.enqueue("sent just before the plane died")
    await host.wait_until(lambda: host.ack_of(message) == "processing")
    # More passes that find nobody on the socket than a message has attempts.
    await host.wait_until(lambda: agent.passes > MAX_TURN_ATTEMPTS + 2)
    assert host.replies_to(message) == []
    assert host.ack_of(message) == "processing"
    server = FakeModelServer()
    await nursery.start(server.serve, host.config.model_socket)  # a new plane
    reply = await host.wait_for_reply(message)
    assert reply.content == "echo: sent just before the plane died"
    assert host.ack_of(message) == "completed"


async def test_a_reply_has_the_same_id_whichever_run_writes_it(
        host: HostSide, fake_model: FakeModelServer) -> None:
    """Killed after the model answered but before the commit, the turn runs again in a
    new agent; its reply's id (the delivery and idempotency key) is the one any run
    would write, derived from the inbound row."""
    fake_model.hold()
    message = host.enqueue("answer me once")
    async with trio.open_nursery() as sandbox:
        await sandbox.start(Agent(host.config, host.keys, FAST).run)
        with trio.fail_after(10):
            await fake_model.wait_for_requests(1)
        sandbox.cancel_scope.cancel()
    fake_model.release()
    async with trio.open_nursery() as sandbox:
        await sandbox.start(Agent(host.config, host.keys, FAST).run)
        reply = await host.wait_for_reply(message)
        sandbox.cancel_scope.cancel()
    assert reply.id == turn_row_id("out", message, "reply")
    assert [m.id for m in host.replies_to(message)] == [reply.id]
