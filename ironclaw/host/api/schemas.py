"""JSON Schemas of what the API takes and returns (OpenAPI 3.1 components).

Request bodies here are enforced by :mod:`.validate`, so the document and the server
cannot disagree about what is acceptable. Response schemas describe what
:mod:`.render` produces; the schemathesis test holds the two together.
"""

from __future__ import annotations

from typing import Any

from ironclaw.contract.enums import (
    ChangeKind,
    ChangeStatus,
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
    UnknownSenderPolicy,
)
from ironclaw.host.scheduling import TaskStatus

Schema = dict[str, Any]

ENTITY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SENDER_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
CONVERSATION_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
MAX_REASON = 2000
MAX_TEXT = 64 * 1024
MAX_ANSWER = 4000
MAX_TTL_SECONDS = 90 * 24 * 3600
ROLES = ["owner", "admin", "approver", "viewer"]
# The roles a principal minted through the API may hold: an owner is only ever the
# bootstrapped one (docs/api.md, "Authentication and principals").
GRANTABLE_ROLES = ["admin", "approver", "viewer"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """A response object: every listed property is always present."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def array_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}

# Request bodies (enforced).

PRINCIPAL_CREATE: Schema = {
    "type": "object", "additionalProperties": False, "required": ["name", "roles"],
    "properties": {
        "name": {"type": "string", "pattern": SENDER_PATTERN, "maxLength": 64,
                 "description": "the new principal's name (never reused once revoked)"},
        "roles": {"type": "array", "maxItems": 3,
                  "items": {"type": "string", "enum": GRANTABLE_ROLES},
                  "description": "one or more of admin, approver, viewer"},
        "agent_groups": {"type": "array", "maxItems": 64,
                         "items": {"type": "string", "pattern": ENTITY_PATTERN},
                         "description": "limit it to these agent groups' changes "
                                        "(submitting and deciding); absent: every group"},
    },
}

CHANGE_SUBMIT: Schema = {
    "type": "object", "additionalProperties": False,
    "required": ["kind", "agent_group", "payload"],
    "properties": {
        "kind": {"type": "string", "enum": [k.value for k in ChangeKind]},
        "agent_group": {"type": "string", "pattern": ENTITY_PATTERN,
                        "description": "the agent group the change is about (for "
                                       "create_agent, the new group's folder)"},
        "payload": {"description": "the change's `after`: any JSON value; its shape "
                                   "depends on the kind"},
        "reason": {"type": ["string", "null"], "maxLength": MAX_REASON},
        "ttl_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0,
                        "maximum": MAX_TTL_SECONDS},
    },
}

DECISION: Schema = {
    "type": "object", "additionalProperties": False, "required": ["outcome"],
    "properties": {
        "outcome": {"type": "string", "enum": ["approve", "reject"]},
        "reason": {"type": ["string", "null"], "maxLength": MAX_REASON},
    },
}

LOCAL_MESSAGE: Schema = {
    "type": "object", "additionalProperties": False,
    "required": ["agent_group", "sender", "text"],
    "properties": {
        "agent_group": {"type": "string", "pattern": ENTITY_PATTERN},
        "sender": {"type": "string", "pattern": SENDER_PATTERN,
                   "description": "the chat handle (the router makes it local:<sender>); "
                                  "owners and admins may use any, others only their own "
                                  "principal name"},
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        "conversation": {"type": "string", "pattern": CONVERSATION_PATTERN,
                         "description": "a local conversation already wired to the agent "
                                        "group; by default the group's own (demo: "
                                        "\"demo\")"},
    },
}

CHAT_USER_PATTERN = "^[a-z0-9][a-z0-9_-]{0,31}:[^\\s:]{1,128}$"

CHAT_APPROVAL: Schema = {
    "type": "object", "additionalProperties": False, "required": ["user_id", "enabled"],
    "properties": {
        "user_id": {"type": "string", "pattern": CHAT_USER_PATTERN, "maxLength": 161,
                    "description": "the owner's registry user id, <channel>:<stable "
                                   "platform sender id> (e.g. telegram:12345)"},
        "enabled": {"type": "boolean",
                    "description": "true: may decide changes from a direct chat; false: "
                                   "may not (the default)"},
    },
}

ANSWER: Schema = {
    "type": "object", "additionalProperties": False, "required": ["answer"],
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER}},
}

# Responses.

COMPONENTS: dict[str, Schema] = {
    "Error": obj({"error": STR, "detail": STR}),
    "Health": obj({"status": {"type": "string", "enum": ["ok"]}, "version": STR}),
    "Readiness": obj({
        "status": {"type": "string", "enum": ["ready", "not ready"]},
        "checks": {"type": "object", "additionalProperties": obj(
            {"ok": BOOL, "detail": STR}, ["ok"])}}),
    "Whoami": obj({"name": STR, "roles": array_of({"type": "string", "enum": ROLES})}),
    "Status": obj({
        "runtime": STR,
        "runtime_strength": {"type": "string", "enum": ["gvisor", "shared-kernel", "none"]},
        "runtime_warning": nullable("string"),
        "channels": array_of(obj({"channel": STR, "instance": STR, "status": {
            "type": "string",
            "enum": ["starting", "up", "down", "parked", "stopped"]}}))}),
    "ChangeSubmit": CHANGE_SUBMIT,
    "DecisionRequest": DECISION,
    "LocalMessage": LOCAL_MESSAGE,
    "AnswerRequest": ANSWER,
    "ChatApprovalRequest": CHAT_APPROVAL,
    "PrincipalCreate": PRINCIPAL_CREATE,
    "Task": obj({"id": STR, "session_id": STR, "agent_group_id": STR,
                 "status": {"type": "string", "enum": [s.value for s in TaskStatus]},
                 "prompt": STR, "recurrence": nullable("string"), "timezone": STR,
                 "next_run_at": nullable("integer"), "last_run_at": nullable("integer"),
                 "fired_count": INT, "created_at": INT, "updated_at": INT}),
    "TaskList": obj({"tasks": array_of(ref("Task"))}),
    "TaskSteered": obj({"task": ref("Task"), "changed": BOOL}),
    "PrincipalInfo": obj({"name": STR, "roles": array_of(STR),
                          "agent_groups": {"oneOf": [array_of(STR), {"type": "null"}]},
                          "created_at": INT, "revoked_at": nullable("integer")}),
    "PrincipalList": obj({"principals": array_of(ref("PrincipalInfo"))}),
    "PrincipalToken": obj({"name": STR, "roles": array_of(STR),
                           "agent_groups": {"oneOf": [array_of(STR), {"type": "null"}]},
                           "token": STR}),
    "PrincipalRevoked": obj({"name": STR, "revoked": BOOL}),
    "ChatApprovalResult": obj({"user_id": STR, "enabled": BOOL, "changed": BOOL}),
    "ChatApprover": obj({"user_id": STR, "enabled_by": STR, "enabled_at": INT,
                         "owner": BOOL}),
    "ChatApproverList": obj({"approvers": array_of(ref("ChatApprover"))}),
    "QuarantinedSession": obj({"session_id": STR, "agent_group_id": STR, "reason": STR,
                               "since": INT}),
    "QuarantineList": obj({"sessions": array_of(ref("QuarantinedSession"))}),
    "QuarantineLifted": obj({"session_id": STR, "agent_group_id": STR, "lifted": BOOL}),
    "ChangeAccepted": obj({"id": STR, "status": {"type": "string",
                                                   "enum": [s.value for s in ChangeStatus]}}),
    "DiffEntry": obj({"path": STR, "op": {"type": "string",
                                          "enum": ["add", "remove", "replace"]},
                      "before": ANY, "after": ANY}, ["path", "op"]),
    "Decision": obj({"outcome": {"type": "string", "enum": ["approve", "reject"]},
                     "decided_by": STR, "decided_at": INT, "reason": nullable("string")}),
    "Change": obj({
        "id": STR, "kind": {"type": "string", "enum": [k.value for k in ChangeKind]},
        "agent_group": STR,
        "status": {"type": "string", "enum": [s.value for s in ChangeStatus]},
        "requested_by": STR, "reason": nullable("string"), "created_at": INT,
        "expires_at": nullable("integer"), "before": ANY, "after": ANY,
        "diff": array_of(ref("DiffEntry")), "diff_lines": array_of(STR),
        "decision": {"oneOf": [ref("Decision"), {"type": "null"}]},
        "applied_at": nullable("integer")}),
    "ChangeWithApprovals": {"allOf": [ref("Change"), obj({"approvals": array_of(STR)})]},
    "ChangeList": obj({"changes": array_of(ref("Change"))}),
    "AuditEntry": obj({"seq": INT, "at": INT, "kind": STR,
                       "fields": {"type": "object"}, "prev": STR, "mac": STR}),
    "AuditTail": obj({"entries": array_of(ref("AuditEntry"))}),
    "AuditVerify": obj({"ok": BOOL, "entries": INT, "problems": array_of(STR),
                        "last_seq": INT}),
    "LocalMessageAccepted": obj({"message_id": STR, "conversation": STR}),
    "TranscriptEntry": obj({"index": INT, "role": {"type": "string",
                                                   "enum": ["user", "agent"]},
                            "sender": STR, "text": STR, "at": INT, "message_id": STR,
                            "thread_id": nullable("string")}),
    "Conversation": obj({"conversation": STR,
                         "messages": array_of(ref("TranscriptEntry"))}),
    "Session": obj({"id": STR, "agent_group_id": STR,
                    "messaging_group_id": nullable("string"),
                    "thread_id": nullable("string"),
                    "mode": {"type": "string", "enum": [m.value for m in SessionMode]},
                    "status": STR, "container_status": STR, "created_at": INT,
                    "last_active": INT, "live": BOOL,
                    "heartbeat_at": nullable("integer")}),
    "SessionList": obj({"sessions": array_of(ref("Session"))}),
    "SessionDeleted": obj({"session_id": STR, "agent_group_id": STR, "deleted": BOOL,
                           "workspace": BOOL}),
    "Persona": obj({"identity": STR, "soul": STR, "instructions": STR}),
    "AgentGroup": obj({"id": STR, "name": STR, "folder": STR, "provider": STR,
                       "model": STR, "persona": ref("Persona"),
                       "enabled_tools": array_of(STR), "created_at": INT,
                       "updated_at": INT}),
    "AgentGroupList": obj({"agent_groups": array_of(ref("AgentGroup"))}),
    "Destination": obj({"agent_group_id": STR, "name": STR, "type": STR,
                        "display_name": nullable("string"), "channel": nullable("string"),
                        "instance": nullable("string"), "platform_id": nullable("string"),
                        "target_agent_group_id": nullable("string")}),
    "DestinationList": obj({"destinations": array_of(ref("Destination"))}),
    "McpGrant": obj({"agent_group_id": STR,
                     "tools": {"oneOf": [{"const": "*"}, array_of(STR)]}}),
    "McpServer": obj({
        "name": STR, "command": STR, "args": array_of(STR), "egress": array_of(STR),
        "session_workspace": BOOL, "tools": {"type": ["array", "null"], "items": STR},
        "grants": array_of(ref("McpGrant"))}),
    "McpServerList": obj({"enabled": BOOL, "servers": array_of(ref("McpServer"))}),
    "MessagingGroup": obj({
        "id": STR, "channel": STR, "platform_id": STR, "instance": STR,
        "unknown_sender_policy": {"type": "string",
                                  "enum": [p.value for p in UnknownSenderPolicy]},
        "name": STR, "created_at": INT}),
    "MessagingGroupList": obj({"messaging_groups": array_of(ref("MessagingGroup"))}),
    "Wiring": obj({
        "id": STR, "messaging_group_id": STR, "agent_group_id": STR,
        "engage_mode": {"type": "string", "enum": [m.value for m in EngageMode]},
        "pattern": STR,
        "sender_scope": {"type": "string", "enum": [s.value for s in SenderScope]},
        "ignored_policy": {"type": "string",
                           "enum": [p.value for p in IgnoredMessagePolicy]},
        "session_mode": {"type": "string", "enum": [m.value for m in SessionMode]},
        "priority": INT}),
    "WiringList": obj({"wirings": array_of(ref("Wiring"))}),
    "Question": obj({"id": STR, "session_id": STR, "agent_group_id": nullable("string"),
                     "question": STR, "options": array_of(STR), "allow_freeform": BOOL,
                     "status": {"type": "string", "enum": ["pending", "answered"]},
                     "asked_at": INT, "answer": nullable("string"),
                     "answered_by": nullable("string"),
                     "answered_at": nullable("integer")}),
    "QuestionList": obj({"questions": array_of(ref("Question"))}),
    "AccessRequest": obj({"id": STR, "messaging_group_id": STR, "user_id": STR,
                          "status": {"type": "string",
                                     "enum": ["pending", "granted", "denied"]},
                          "requested_at": INT, "decided_by": nullable("string"),
                          "decided_at": nullable("integer"), "change_id": STR}),
    "AccessRequestList": obj({"access_requests": array_of(ref("AccessRequest"))}),
}
