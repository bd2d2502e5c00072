"""System rows: what a session asks the host to do, dispatched to whoever does it.

| action | goes to | never |
|---|---|---|
| ``schedule_task`` | the scheduler (a task of this session) | escalated to a human |
| ``list_tasks`` ... ``update_task`` | the scheduler (this session's tasks only) | escalated |
| ``ask_user_question`` | the questions store; the text then goes to the origin chat | gated |
| ``send_file`` | the row handler: read from the workspace, delivered like a chat row | gated |
| a change kind, or **any unknown action** | the capability gate, pending | applied here |
| malformed | refused with ``delivery.rejected`` | retried |

Every effect is keyed by the row's delivery key (task id, question id, change id, the
reply row's id), so handling the same row twice after a crash has one effect.
Input problems (``ValueError`` / ``LookupError`` from the stores: a bad recurrence, a
foreign task id, too many tasks) are refusals; anything else propagates, and delivery
retries the row.
"""

from __future__ import annotations

import attrs

from ironclaw.contract.actions import (
    AskUserQuestion,
    CapabilityRequest,
    MalformedAction,
    ScheduleTask,
    SendFile,
    TaskControl,
    UnknownAction,
    parse_system_action,
)
from ironclaw.contract.queue import QueueFull
from ironclaw.contract.rows import OutboundMessage
from ironclaw.host.mailboxes import CapabilityGate, TaskScheduler
from ironclaw.host.questions import Question, QuestionConflict, Questions

from .events import public_reason
from .records import derived_id

__all__ = ["ActionDispatcher", "Asked", "FileRequested", "Handled", "Refused"]


@attrs.frozen
class Handled:
    action: str
    result_id: str


@attrs.frozen
class Asked:
    """The question is recorded; its text still has to reach the origin chat."""

    question: Question


@attrs.frozen
class FileRequested:
    """A workspace file to deliver to the row's target, as a chat row's text would be."""

    request: SendFile


@attrs.frozen
class Refused:
    reason: str


ActionResult = Handled | Asked | FileRequested | Refused


class ActionDispatcher:
    def __init__(self, *, scheduler: TaskScheduler, questions: Questions,
                 gate: CapabilityGate) -> None:
        self._scheduler = scheduler
        self._questions = questions
        self._gate = gate

    async def dispatch(self, *, session_id: str, agent_group_id: str, key: str,
                       row: OutboundMessage) -> ActionResult:
        action = parse_system_action(row.content)
        if isinstance(action, MalformedAction):
            return Refused(f"malformed system action: {public_reason(action.reason)}")
        try:
            return await self._dispatch(session_id, agent_group_id, key, row, action)
        except (ValueError, LookupError, QuestionConflict, QueueFull) as exc:
            # QueueFull: the session's own inbound is at its cap (a list_tasks answer
            # did not fit); refused like any other permanent failure, never retried.
            name = type(exc).__name__
            return Refused(f"{name}: {public_reason(str(exc))}" if str(exc) else name)

    async def _dispatch(self, session_id: str, agent_group_id: str, key: str,
                        row: OutboundMessage,
                        action: ScheduleTask | TaskControl | AskUserQuestion | SendFile
                        | CapabilityRequest | UnknownAction) -> ActionResult:
        if isinstance(action, SendFile):
            return FileRequested(action)
        if isinstance(action, ScheduleTask):
            task = await self._scheduler.schedule(
                session_id=session_id, agent_group_id=agent_group_id, request=action,
                task_id=derived_id("task_", key))
            return Handled("schedule_task", task.id)
        if isinstance(action, TaskControl):
            reply_id = derived_id("tasks-", key)
            changed = await self._scheduler.control(session_id=session_id, request=action,
                                                    reply_id=reply_id)
            result = reply_id if action.action == "list_tasks" else changed[0].id
            return Handled(action.action, result)
        if isinstance(action, AskUserQuestion):
            question = await self._questions.ask(
                session_id=session_id, agent_group_id=agent_group_id, request=action,
                question_id=derived_id("q_", key))
            return Asked(question)
        kind = action.kind.value if isinstance(action, CapabilityRequest) else action.action
        change_id = await self._gate.submit_from_sandbox(
            session_id=session_id, agent_group_id=agent_group_id, kind=kind,
            payload=action.payload, reason=action.reason, outbound_id=row.id)
        label = "capability_request" if isinstance(action, CapabilityRequest) else (
            "unknown_action")
        return Handled(label, change_id)
