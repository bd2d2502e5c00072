"""Tools that ask the host for something: tasks, questions, capability changes.

Each writes one ``system`` row (a contract system-action envelope) into the turn's
outbox and tells the model that the request is on its way. None applies anything:
the agent has no code path that changes what it is or may do. A capability change
lands at the gateway, where a human decides.

Envelopes are checked with the contract's own parser before they are queued, so the
model hears about a bad field now instead of the host dead-lettering the row later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ironclaw.contract.actions import (
    AskUserQuestion,
    CapabilityRequest,
    MalformedAction,
    ScheduleTask,
    SystemAction,
    TaskControl,
    parse_system_action,
)
from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONRejected, canonical_json

from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg

# Kinds the host refuses because nothing would enforce the grant, with why: the tool
# says so rather than send a request a human could only refuse.
UNAVAILABLE_KINDS = {
    ChangeKind.PACKAGES.value:
        "the sandbox image is sealed: it has no package manager, and nothing writable in "
        "it may run. Ask for an enabled tool (enabled_tools) or network access to an API "
        "(request_api_access) instead.",
    ChangeKind.MOUNTS.value: "sandboxes are not started with host mounts; files reach you "
                             "through your workspace.",
}
# create_agent, access, a chat's policy and the model are decided by operators through
# their own flows; an agent asking for them would only be noise at the gateway.
OPERATOR_KINDS = (ChangeKind.CREATE_AGENT, ChangeKind.ACCESS, ChangeKind.CHAT_POLICY,
                  ChangeKind.MODEL)
REQUESTABLE_KINDS = tuple(k.value for k in ChangeKind
                          if k not in OPERATOR_KINDS and k.value not in UNAVAILABLE_KINDS)
MAX_HOSTS = 20
MAX_REASON = 2000
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
HUMAN_DECIDES = "A human will decide; nothing has changed yet."


def _checked(envelope: dict[str, Any], expected: type) -> SystemAction:
    try:
        text = canonical_json({k: v for k, v in envelope.items() if v is not None})
    except JSONRejected as exc:
        raise ToolError(str(exc)) from None
    action = parse_system_action(text)
    if isinstance(action, MalformedAction):
        raise ToolError(action.reason)
    if not isinstance(action, expected):
        raise ToolError("the request did not have the expected form")
    return action


async def schedule_task(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    action = _checked({"action": "schedule_task", "prompt": args.get("prompt"),
                       "run_at": args.get("run_at"), "recurrence": args.get("recurrence"),
                       "timezone": args.get("timezone")}, ScheduleTask)
    ctx.emit_system(action)
    return "Task requested; the host's scheduler will confirm it."


def _task_control(name: str, *, needs_id: bool = True, fields: tuple[str, ...] = ()) -> Tool:
    async def invoke(ctx: ToolContext, args: Mapping[str, Any]) -> str:
        task_id = string_arg(args, "task_id", max_bytes=128, required=needs_id)
        envelope: dict[str, Any] = {"action": name, "task_id": task_id}
        envelope.update({f: args.get(f) for f in fields})
        ctx.emit_system(_checked(envelope, TaskControl))
        if name == "list_tasks":
            return "Requested; the task list will arrive as a new message."
        return f"{name} requested for {task_id}; the host will confirm."

    properties = {"task_id": STRING} if needs_id else {}
    properties.update({f: STRING for f in fields})
    verb = name.split("_")[0]
    description = ("List your scheduled tasks." if not needs_id
                   else f"{verb.capitalize()} one of your scheduled tasks.")
    return Tool(name, description, schema(properties, ["task_id"] if needs_id else []),
                invoke)


async def ask_user_question(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    action = _checked({"action": "ask_user_question", "question": args.get("question"),
                       "options": args.get("options", []),
                       "allow_freeform": args.get("allow_freeform")}, AskUserQuestion)
    ctx.emit_system(action)
    return "Question sent; the answer will arrive as a new message."


async def request_capability_change(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    kind = required_string(args, "kind", max_bytes=64)
    if kind in UNAVAILABLE_KINDS:
        raise ToolError(f"{kind!r} cannot be granted: {UNAVAILABLE_KINDS[kind]}")
    if kind not in REQUESTABLE_KINDS:
        raise ToolError(f"kind must be one of: {', '.join(REQUESTABLE_KINDS)}")
    payload = args.get("payload")
    if not isinstance(payload, dict):
        raise ToolError("'payload' must be a JSON object describing the change")
    reason = string_arg(args, "reason", max_bytes=MAX_REASON, required=False)
    return _request(ctx, ChangeKind(kind), payload, reason)


async def request_api_access(ctx: ToolContext, args: Mapping[str, Any]) -> str:
    hosts = args.get("hosts")
    if not isinstance(hosts, list) or not 1 <= len(hosts) <= MAX_HOSTS:
        raise ToolError(f"'hosts' must be a list of 1 to {MAX_HOSTS} host names")
    cleaned: list[str] = []
    for host in hosts:
        if not isinstance(host, str) or not _HOSTNAME.fullmatch(host.strip().lower()):
            raise ToolError(f"not a host name: {host!r:.100}")
        if host.strip().lower() not in cleaned:
            cleaned.append(host.strip().lower())
    reason = required_string(args, "reason", max_bytes=MAX_REASON)
    return _request(ctx, ChangeKind.EGRESS, {"hosts": cleaned}, reason)


def _request(ctx: ToolContext, kind: ChangeKind, payload: dict[str, Any],
             reason: str | None) -> str:
    ctx.emit_system(_checked({"action": kind.value, "payload": payload, "reason": reason},
                             CapabilityRequest))
    return f"Requested a change of kind {kind.value!r}. {HUMAN_DECIDES}"


RUN_AT = {"type": "string", "description": "ISO 8601 with a UTC offset, e.g. "
          "2030-01-31T09:00:00+01:00; omit to run now."}
HOST_REQUEST_TOOLS = (
    Tool("schedule_task",
         "Ask the host to run a prompt later, once or on a recurrence (e.g. a cron "
         "expression). The prompt comes back to you as a task message.",
         schema({"prompt": STRING, "run_at": RUN_AT, "recurrence": STRING,
                 "timezone": STRING}, ["prompt"]), schedule_task),
    _task_control("list_tasks", needs_id=False),
    _task_control("cancel_task"),
    _task_control("pause_task"),
    _task_control("resume_task"),
    _task_control("update_task", fields=("prompt", "run_at", "recurrence")),
    Tool("ask_user_question",
         "Ask the user a question, optionally with choices. The answer arrives as a new "
         "message.",
         schema({"question": STRING, "options": {"type": "array", "items": STRING},
                 "allow_freeform": {"type": "boolean"}}, ["question"]), ask_user_question),
    Tool("request_capability_change",
         "Ask for a change to what you are or may do (" + ", ".join(REQUESTABLE_KINDS)
         + "). You cannot change yourself: this sends the request to a human, who "
         "decides. No packages can be installed: the image is sealed.",
         schema({"kind": {"type": "string", "enum": list(REQUESTABLE_KINDS)},
                 "payload": {"type": "object"}, "reason": STRING}, ["kind", "payload"]),
         request_capability_change),
    Tool("request_api_access",
         "Ask for network access to named hosts (you have none by default). A human "
         "decides.",
         schema({"hosts": {"type": "array", "items": STRING}, "reason": STRING},
                ["hosts", "reason"]), request_api_access),
)
