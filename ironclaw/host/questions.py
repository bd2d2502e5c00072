"""Questions an agent asks its user, and the answers that flow back to it.

``ask`` records the question pending in host.db's ``questions`` table (delivery then
sends :func:`render_question` to the session's origin chat). ``answer`` checks the
answer (one of the options, by text or by number, or free text when allowed), marks the
question answered with a compare-and-set (a second answer is a
:class:`QuestionConflict`, an unknown id a :class:`QuestionNotFound`), then feeds it back
as an inbound ``chat`` row, ``Answer to question <id>: <answer>``, and wakes the
session. The anchor kept questions in memory and never returned an answer.

Today the answer arrives through this API (the HTTP API and ``ironctl questions`` will
call it); answering by replying in the chat needs the router to recognise replies and
is left for later.

Crash safety: the answer is durable before it is fed back, and the fed-back row's id is
``ans-<question id>``, so :meth:`Questions.feed_back_answered` (run by the sweeper)
re-feeds an answer that was recorded but not yet enqueued, without ever doubling it.
"""

from __future__ import annotations

import enum
import logging
import secrets
from typing import Any, ClassVar

import attrs

from ironclaw.contract.actions import MAX_QUESTION, AskUserQuestion
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import validate_message_id
from ironclaw.contract.jsonvalue import canonical_json, parse_json
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.runtime import DiscardEvents, EventSink, SystemClock, WallClock

from .inbound import SessionInbox
from .store import HostStore

__all__ = [
    "InvalidAnswer",
    "Question",
    "QuestionAnswered",
    "QuestionAsked",
    "QuestionConflict",
    "QuestionNotFound",
    "QuestionStatus",
    "Questions",
    "render_question",
]

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES = MAX_QUESTION
MAX_PRINCIPAL_BYTES = 128


class QuestionStatus(enum.StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"


class QuestionNotFound(LookupError):
    pass


class QuestionConflict(Exception):
    """The question was already answered."""


class InvalidAnswer(ValueError):
    """Not one of the options, and free text is not allowed (or the text is unusable)."""


@attrs.frozen
class Question:
    id: str
    session_id: str
    agent_group_id: str | None
    question: str
    options: tuple[str, ...]
    allow_freeform: bool
    status: QuestionStatus
    asked_at: int
    answer: str | None = None
    answered_by: str | None = None
    answered_at: int | None = None
    fed_back_at: int | None = None


@attrs.frozen
class QuestionAsked:
    type: ClassVar[str] = "question.asked"
    question_id: str
    session_id: str
    options: int


@attrs.frozen
class QuestionAnswered:
    type: ClassVar[str] = "question.answered"
    question_id: str
    session_id: str
    answered_by: str
    fed_back: bool


def new_question_id() -> str:
    return "q_" + secrets.token_hex(12)


def render_question(question: Question) -> str:
    """The text sent to the chat: the question, then its options numbered from 1."""
    lines = [question.question]
    lines += [f"{number}. {option}" for number, option in enumerate(question.options, 1)]
    if question.options and question.allow_freeform:
        lines.append("(or answer in your own words)")
    return "\n".join(lines)


def answer_text(question: Question, answer: str) -> str:
    """The answer as it is recorded: an option's own text, or checked free text."""
    given = answer.strip()
    if given.isdigit() and 1 <= int(given) <= len(question.options):
        return question.options[int(given) - 1]
    for option in question.options:
        if given == option.strip() or given.casefold() == option.strip().casefold():
            return option
    if not question.allow_freeform:
        raise InvalidAnswer("the answer must be one of the options")
    if not given or "\x00" in given or len(given.encode("utf-8", "replace")) > MAX_ANSWER_BYTES:
        raise InvalidAnswer(f"a free answer is 1 to {MAX_ANSWER_BYTES} bytes of text")
    return given


_COLUMNS = ("id, session_id, agent_group_id, question, options, allow_freeform, status, "
            "asked_at, answer, answered_by, answered_at, fed_back_at")


def _question(row: tuple[Any, ...]) -> Question:
    (id_, sid, group, text, options, freeform, status, asked, answer, by, answered,
     fed) = row
    return Question(id_, sid, group, text, tuple(parse_json(options, max_bytes=1 << 20)),
                    bool(freeform), QuestionStatus(status), asked, answer, by, answered, fed)


def _get(conn: Any, question_id: str) -> Question:
    row = conn.execute(f"SELECT {_COLUMNS} FROM questions WHERE id = ?",
                       (question_id,)).fetchone()
    if row is None:
        raise QuestionNotFound("no such question")
    return _question(row)


def _insert(conn: Any, q: Question) -> tuple[Question, bool]:
    if conn.execute("SELECT 1 FROM questions WHERE id = ?", (q.id,)).fetchone():
        found = _get(conn, q.id)
        if found.session_id != q.session_id:
            raise QuestionConflict("question id already in use")
        return found, False
    conn.execute(
        f"INSERT INTO questions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (q.id, q.session_id, q.agent_group_id, q.question, canonical_json(list(q.options)),
         int(q.allow_freeform), q.status.value, q.asked_at, None, None, None, None))
    return q, True


def _mark_answered(conn: Any, question_id: str, answer: str, by: str, at: int) -> Question:
    current = _get(conn, question_id)
    if current.status is not QuestionStatus.PENDING:
        raise QuestionConflict("the question is already answered")
    conn.execute("UPDATE questions SET status = 'answered', answer = ?, answered_by = ?, "
                 "answered_at = ? WHERE id = ? AND status = 'pending'",
                 (answer, by, at, question_id))
    return _get(conn, question_id)


def _mark_fed_back(conn: Any, question_id: str, at: int) -> None:
    conn.execute("UPDATE questions SET fed_back_at = ? WHERE id = ? AND fed_back_at IS NULL",
                 (at, question_id))


def _list(conn: Any, where: str, args: tuple[object, ...], limit: int) -> list[Question]:
    return [_question(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM questions WHERE {where} ORDER BY asked_at, id LIMIT ?",
        (*args, limit))]


def _prune(conn: Any, answered_before: int) -> int:
    return int(conn.execute(
        "DELETE FROM questions WHERE status = 'answered' AND fed_back_at IS NOT NULL "
        "AND answered_at < ?", (answered_before,)).rowcount)


class Questions:
    def __init__(self, store: HostStore, inbox: SessionInbox, *,
                 events: EventSink | None = None, clock: WallClock | None = None) -> None:
        self._store = store
        self._inbox = inbox
        self._events = events or DiscardEvents()
        self._clock = clock or SystemClock()

    async def ask(self, *, session_id: str, agent_group_id: str | None,
                  request: AskUserQuestion, question_id: str | None = None) -> Question:
        """Record a pending question. ``question_id`` makes a retried ask idempotent."""
        if not request.question.strip():
            raise InvalidAnswer("a question needs text")
        question = Question(id=question_id or new_question_id(), session_id=session_id,
                            agent_group_id=agent_group_id, question=request.question,
                            options=request.options, allow_freeform=request.allow_freeform,
                            status=QuestionStatus.PENDING, asked_at=self._clock.now_us())
        stored, created = await self._store.transaction(_insert, question)
        if created:
            self._events.publish(QuestionAsked(stored.id, session_id, len(stored.options)))
        return stored

    async def get(self, question_id: str) -> Question:
        return await self._store.call(_get, question_id)

    async def pending(self, session_id: str | None = None, limit: int = 100
                      ) -> list[Question]:
        if session_id is None:
            return await self._store.call(_list, "status = 'pending'", (), limit)
        return await self._store.call(_list, "status = 'pending' AND session_id = ?",
                                      (session_id,), limit)

    async def answer(self, question_id: str, answer: str, answered_by: str) -> Question:
        """Answer a pending question and feed the answer to its session.

        Raises :class:`QuestionNotFound`, :class:`QuestionConflict` (already answered),
        :class:`InvalidAnswer`. If feeding back fails after the answer is recorded, the
        answer stands and the sweeper feeds it back later."""
        by = answered_by.strip()
        if not by or len(by.encode("utf-8", "replace")) > MAX_PRINCIPAL_BYTES:
            raise InvalidAnswer("answered_by must name who answered")
        question = await self.get(question_id)
        text = answer_text(question, answer)
        answered = await self._store.transaction(_mark_answered, question_id, text, by,
                                                 self._clock.now_us())
        fed_back = False
        try:
            answered = await self._feed_back(answered)
            fed_back = True
        except Exception as exc:
            logger.warning("answer to %s recorded but not yet fed back: %s", question_id,
                           type(exc).__name__)
        self._events.publish(QuestionAnswered(question_id, answered.session_id, by, fed_back))
        return answered

    async def _feed_back(self, question: Question) -> Question:
        await self._inbox.put(question.session_id, NewInboundMessage(
            id=validate_message_id(f"ans-{question.id}"), kind=MessageKind.CHAT,
            content=f"Answer to question {question.id}: {question.answer}", engages=True),
            wake_reason="answer")
        at = self._clock.now_us()
        await self._store.transaction(_mark_fed_back, question.id, at)
        return attrs.evolve(question, fed_back_at=at)

    async def feed_back_answered(self, limit: int = 100) -> int:
        """Feed back answers recorded but not yet enqueued (a crash or a broken queue
        in between). Returns how many were fed back now."""
        done = 0
        for question in await self._store.call(
                _list, "status = 'answered' AND fed_back_at IS NULL", (), limit):
            try:
                await self._feed_back(question)
                done += 1
            except Exception as exc:
                logger.warning("answer to %s still not fed back: %s", question.id,
                               type(exc).__name__)
        return done

    async def prune(self, *, answered_before: int) -> int:
        """Delete answered (and fed-back) questions answered before the cutoff."""
        return await self._store.transaction(_prune, answered_before)
