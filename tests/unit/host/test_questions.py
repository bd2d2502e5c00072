"""Questions: asked through a system row, shown in the origin chat, answered through
the API, and fed back to the session as an inbound chat row with a wake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.contract.actions import AskUserQuestion
from ironclaw.contract.enums import MessageKind
from ironclaw.host.delivery import ActionHandled, Delivery, DeliveryRejected
from ironclaw.host.inbound import SessionInbox
from ironclaw.host.questions import (
    InvalidAnswer,
    QuestionAnswered,
    QuestionConflict,
    QuestionNotFound,
    Questions,
    QuestionStatus,
)
from ironclaw.host.registry import Session
from tests.support.delivery import Harness, open_harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(tmp_path) as harness:
        yield harness


async def ask(h: Harness, delivery: Delivery, session: Session, **fields: object) -> str:
    row = h.row(json.dumps({"action": "ask_user_question", **fields}),
                kind=MessageKind.SYSTEM)
    seen = len(h.events.of(ActionHandled))
    await delivery.submit(h.batch(session, [row]))
    await h.progress.wait_through(session.id, row.seq)
    handled = h.events.of(ActionHandled)[seen:]
    assert [e.action for e in handled] == ["ask_user_question"]
    return str(handled[0].result_id)


def answers(h: Harness, session_id: str) -> list[str]:
    return [m.content for m in h.inbound(session_id) if m.id.startswith("ans-")]


async def test_question_is_shown_answered_and_fed_back(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    question_id = await ask(h, delivery, session, question="Which deploy window?",
                            options=["tonight", "tomorrow 9:00"], allow_freeform=False)
    assert h.local.texts("chat-1") == ["Which deploy window?\n1. tonight\n2. tomorrow 9:00"]
    (pending,) = await h.questions.pending(session.id)
    assert (pending.id, pending.status) == (question_id, QuestionStatus.PENDING)
    assert h.inbound(session.id) == [] and h.wakes.of(session.id) == []

    answered = await h.questions.answer(question_id, "2", "local:alice")
    assert (answered.status, answered.answer, answered.answered_by) == (
        QuestionStatus.ANSWERED, "tomorrow 9:00", "local:alice")
    (row,) = h.inbound(session.id)
    assert row.content == f"Answer to question {question_id}: tomorrow 9:00"
    assert row.kind is MessageKind.CHAT and row.engages
    assert h.wakes.of(session.id) == ["answer"]
    (event,) = h.events.of(QuestionAnswered)
    assert event.fed_back and "tomorrow" not in repr(event)  # ids, not content

    with pytest.raises(QuestionConflict):
        await h.questions.answer(question_id, "tonight", "local:bob")
    assert len(answers(h, session.id)) == 1
    assert await h.questions.pending() == []


async def test_answers_are_checked(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    closed = await ask(h, delivery, session, question="Proceed?", options=["yes", "no"],
                       allow_freeform=False)
    with pytest.raises(InvalidAnswer):
        await h.questions.answer(closed, "maybe", "local:alice")
    with pytest.raises(InvalidAnswer):
        await h.questions.answer(closed, "3", "local:alice")
    with pytest.raises(InvalidAnswer):
        await h.questions.answer(closed, "yes", "   ")
    with pytest.raises(QuestionNotFound):
        await h.questions.answer("q_" + "0" * 24, "yes", "local:alice")
    assert (await h.questions.answer(closed, " YES ", "local:alice")).answer == "yes"

    free = await ask(h, delivery, session, question="Any notes?")
    assert h.local.texts("chat-1")[-1] == "Any notes?"
    with pytest.raises(InvalidAnswer):
        await h.questions.answer(free, "x" * 5000, "local:alice")
    assert (await h.questions.answer(free, "ship it", "local:alice")).answer == "ship it"
    assert answers(h, session.id) == [f"Answer to question {closed}: yes",
                                      f"Answer to question {free}: ship it"]


async def test_a_question_without_text_is_rejected(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    delivery = await h.start_delivery()
    row = h.row(json.dumps({"action": "ask_user_question", "question": "  "}),
                kind=MessageKind.SYSTEM)
    await delivery.submit(h.batch(session, [row]))
    (rejected,) = await h.events.wait_for(DeliveryRejected)
    assert rejected.outbound_id == row.id
    assert await h.questions.pending() == []


class FlakyWakes:
    def __init__(self) -> None:
        self.broken = True
        self.wakes: list[str] = []

    async def wake(self, session_id: str, reason: str = "message") -> None:
        await trio.lowlevel.checkpoint()
        if self.broken:
            raise RuntimeError("sessions actor away")
        self.wakes.append(session_id)


async def test_an_answer_that_could_not_be_fed_back_is_fed_back_later(h: Harness) -> None:
    session = await h.session("g1", "chat-1")
    wakes = FlakyWakes()
    questions = Questions(h.store, SessionInbox(h.queues, wakes), clock=h.clock)
    asked = await questions.ask(session_id=session.id, agent_group_id="g1",
                                request=AskUserQuestion("Ready?", ("yes", "no"), False))
    answered = await questions.answer(asked.id, "yes", "local:alice")
    assert answered.status is QuestionStatus.ANSWERED and answered.fed_back_at is None
    wakes.broken = False
    assert await questions.feed_back_answered() == 1
    assert await questions.feed_back_answered() == 0
    # The row was written on the first try; the retry only woke the session.
    assert answers(h, session.id) == [f"Answer to question {asked.id}: yes"]
    assert wakes.wakes == [session.id]
