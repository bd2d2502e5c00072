"""The runtime's mailbox and reply: single use, and nothing left waiting on close."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from ironclaw.runtime import Mailbox, MailboxClosed, Reply


@attrs.frozen
class Ask:
    question: str
    reply: Reply[str] = attrs.field(factory=Reply, eq=False)


async def test_a_reply_carries_one_value_or_one_failure() -> None:
    answered: Reply[str] = Reply()
    answered.ok("yes")
    assert answered.answered and await answered.wait() == "yes"
    with pytest.raises(RuntimeError, match="already answered"):
        answered.fail(ValueError("late"))
    assert await answered.wait() == "yes"

    failed: Reply[str] = Reply()
    failed.fail(LookupError("gone"))
    with pytest.raises(LookupError, match="gone"):
        await failed.wait()
    with pytest.raises(RuntimeError, match="already answered"):
        failed.ok("late")


async def test_close_answers_every_queued_message_and_refuses_later_ones() -> None:
    mailbox: Mailbox[Ask] = Mailbox(8, what="the oracle")
    served, left = Ask("served"), [Ask("one"), Ask("two")]
    for message in (served, *left):
        await mailbox.send(message)
    async for message in mailbox:
        message.reply.ok(f"answer to {message.question}")
        break
    mailbox.close(lambda message: message.reply.fail(MailboxClosed("stopped")))
    assert await served.reply.wait() == "answer to served"
    for message in left:
        with pytest.raises(MailboxClosed, match="stopped"):
            await message.reply.wait()
    with pytest.raises(MailboxClosed, match="the oracle is not running"):
        await mailbox.send(Ask("after"))


async def test_a_waiting_sender_is_answered_when_the_actor_stops() -> None:
    mailbox: Mailbox[Ask] = Mailbox(1, what="the oracle")
    first, second = Ask("first"), Ask("second")
    results: list[str] = []

    async def ask(message: Ask) -> None:
        await mailbox.send(message)
        try:
            results.append(await message.reply.wait())
        except MailboxClosed:
            results.append(f"{message.question}: refused")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, first)
        nursery.start_soon(ask, second)  # waits for room in the mailbox of one
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close(lambda message: message.reply.fail(MailboxClosed("stopped")))
    assert sorted(results) == ["first: refused", "second: refused"]
