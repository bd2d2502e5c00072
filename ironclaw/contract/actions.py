"""System actions: what a sandbox may ask the host for, as the content of a
``system`` outbound row. The envelope is ``{"action", "payload"?, "reason"?}``.

The parser is total: any bytes in, a typed action or a ``MalformedAction`` out.
It never decides what is privileged (the host does), but it keeps the unknown
apart from the known so that the host can treat unknown as privileged.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import attrs

from .clock import from_datetime, is_plausible
from .enums import ChangeKind
from .jsonvalue import JSONRejected, canonical_json, parse_json
from .rows import MAX_CONTENT_BYTES

SCHEDULE_TASK = "schedule_task"
ASK_USER_QUESTION = "ask_user_question"
SEND_FILE = "send_file"
TASK_CONTROL_ACTIONS = frozenset(
    {"list_tasks", "cancel_task", "pause_task", "resume_task", "update_task"})

MAX_ACTION_NAME = 64
MAX_REASON = 2000
MAX_PROMPT = 16 * 1024
MAX_QUESTION = 4000
MAX_OPTIONS = 20
MAX_OPTION = 200
MAX_FILE_PATH = 4096
MAX_CAPTION = 2000


@attrs.frozen
class ScheduleTask:
    prompt: str
    run_at: int | None  # microseconds; None means now
    recurrence: str | None
    timezone: str | None
    reason: str | None


@attrs.frozen
class TaskControl:
    action: str  # one of TASK_CONTROL_ACTIONS
    task_id: str | None
    prompt: str | None
    run_at: int | None
    recurrence: str | None


@attrs.frozen
class AskUserQuestion:
    question: str
    options: tuple[str, ...]
    allow_freeform: bool


@attrs.frozen
class SendFile:
    """Send a workspace file to a chat: the row's ``destination`` (or the origin chat).
    ``path`` is relative to the workspace; the host reads and checks the file."""

    path: str
    caption: str | None


@attrs.frozen
class CapabilityRequest:
    """A request to change what the agent is or may do: always a gateway matter."""

    kind: ChangeKind
    payload: str  # canonical JSON
    reason: str | None


@attrs.frozen
class UnknownAction:
    """A well-formed envelope with an action name the contract does not know. The
    host must treat it as privileged: unknown never means harmless."""

    action: str
    payload: str  # canonical JSON
    reason: str | None


@attrs.frozen
class MalformedAction:
    reason: str


SystemAction = (ScheduleTask | TaskControl | AskUserQuestion | SendFile | CapabilityRequest
                | UnknownAction)


class _Bad(ValueError):
    pass


def parse_system_action(content: str | bytes) -> SystemAction | MalformedAction:
    try:
        envelope = parse_json(content, max_bytes=MAX_CONTENT_BYTES)
    except JSONRejected as exc:
        return MalformedAction(str(exc))
    try:
        return _parse_envelope(envelope)
    except (_Bad, JSONRejected) as exc:
        return MalformedAction(str(exc)[:300])


def _parse_envelope(envelope: Any) -> SystemAction:
    if not isinstance(envelope, dict):
        raise _Bad("the envelope must be a JSON object")
    action = _string(envelope.get("action"), "action", MAX_ACTION_NAME)
    if not action or not action.replace("_", "").isalnum() or not action.isascii():
        raise _Bad("action must be a non-empty ASCII word")
    reason = _optional_string(envelope.get("reason"), "reason", MAX_REASON)
    if action == SCHEDULE_TASK:
        return ScheduleTask(
            prompt=_string(envelope.get("prompt"), "prompt", MAX_PROMPT),
            run_at=_time(envelope.get("run_at")),
            recurrence=_optional_string(envelope.get("recurrence"), "recurrence", 128),
            timezone=_optional_string(envelope.get("timezone"), "timezone", 64),
            reason=reason)
    if action in TASK_CONTROL_ACTIONS:
        return TaskControl(
            action=action,
            task_id=_optional_string(envelope.get("task_id"), "task_id", 128),
            prompt=_optional_string(envelope.get("prompt"), "prompt", MAX_PROMPT),
            run_at=_time(envelope.get("run_at")),
            recurrence=_optional_string(envelope.get("recurrence"), "recurrence", 128))
    if action == ASK_USER_QUESTION:
        options = envelope.get("options", [])
        if not isinstance(options, list) or len(options) > MAX_OPTIONS:
            raise _Bad(f"options must be a list of at most {MAX_OPTIONS}")
        freeform = envelope.get("allow_freeform", not options)
        if not isinstance(freeform, bool):
            raise _Bad("allow_freeform must be a boolean")
        return AskUserQuestion(
            question=_string(envelope.get("question"), "question", MAX_QUESTION),
            options=tuple(_string(o, "option", MAX_OPTION) for o in options),
            allow_freeform=freeform)
    if action == SEND_FILE:
        return SendFile(path=_string(envelope.get("path"), "path", MAX_FILE_PATH),
                        caption=_optional_string(envelope.get("caption"), "caption",
                                                 MAX_CAPTION))
    payload = canonical_json(envelope.get("payload"))
    try:
        kind = ChangeKind(action)
    except ValueError:
        return UnknownAction(action=action, payload=payload, reason=reason)
    if "payload" not in envelope:
        raise _Bad(f"{action}: a capability request needs a payload")
    return CapabilityRequest(kind=kind, payload=payload, reason=reason)


def render_system_action(action: SystemAction) -> str:
    """The wire form the sandbox writes. The discriminator is always forced."""
    body: dict[str, Any]
    if isinstance(action, ScheduleTask):
        body = {"action": SCHEDULE_TASK, "prompt": action.prompt, "run_at": action.run_at,
                "recurrence": action.recurrence, "timezone": action.timezone,
                "reason": action.reason}
    elif isinstance(action, TaskControl):
        body = {"action": action.action, "task_id": action.task_id, "prompt": action.prompt,
                "run_at": action.run_at, "recurrence": action.recurrence}
    elif isinstance(action, AskUserQuestion):
        body = {"action": ASK_USER_QUESTION, "question": action.question,
                "options": list(action.options), "allow_freeform": action.allow_freeform}
    elif isinstance(action, SendFile):
        body = {"action": SEND_FILE, "path": action.path, "caption": action.caption}
    elif isinstance(action, CapabilityRequest):
        body = {"action": action.kind.value, "payload": parse_json(action.payload,
                max_bytes=MAX_CONTENT_BYTES), "reason": action.reason}
    else:
        body = {"action": action.action, "payload": parse_json(action.payload,
                max_bytes=MAX_CONTENT_BYTES), "reason": action.reason}
    return canonical_json({k: v for k, v in body.items() if v is not None})


def _string(value: Any, field: str, cap: int) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > cap:
        raise _Bad(f"{field} exceeds {cap} bytes")
    if "\x00" in value:
        raise _Bad(f"{field} contains a NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{field} is not valid Unicode") from None
    return value


def _optional_string(value: Any, field: str, cap: int) -> str | None:
    return None if value is None or value == "" else _string(value, field, cap)


def _time(value: Any) -> int | None:
    """``run_at`` is ISO-8601 with an offset, or integer microseconds, or absent."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not is_plausible(value):
            raise _Bad("run_at out of range")
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad("run_at is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise _Bad("run_at needs a time zone offset")
        stamp = from_datetime(parsed)
        if not is_plausible(stamp):
            raise _Bad("run_at out of range")
        return stamp
    raise _Bad("run_at must be ISO-8601 text or integer microseconds")
