"""The OpenAPI 3.1 document: built here, served at ``/v1/openapi.json``, and kept in
the repository as ``docs/openapi.json`` (a test holds the two equal).

Regenerate the file after changing a route::

    python -c "from ironclaw.host.api import openapi; openapi.main()" > docs/openapi.json

Websockets have no place in OpenAPI's ``paths``; they are described under the
top-level ``x-websockets`` extension, with their query parameters, frames and
authentication.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from ironclaw import __version__
from ironclaw.contract.enums import ChangeStatus
from ironclaw.host.scheduling import TaskStatus

from .schemas import COMPONENTS, Schema, ref

NDJSON = "application/x-ndjson"

DESCRIPTION = """\
The IronClaw control plane's API. Every route but `/healthz`, `/readyz` and the web \
console's files under `/ui/` needs `Authorization: Bearer <token>`; each token is a \
named principal with roles (owner, admin, approver, viewer). Viewers read; owners, \
admins and approvers may also submit changes, decide them (each role only the kinds it \
is allowed to approve; any of them may reject), answer questions and post to the local \
channel. The deciding principal is always the one the token names.

Nothing here writes the registry directly: every change to what an agent is or may do \
is a ChangeRequest submitted to `POST /v1/changes`, held by the gateway until a human \
decides it.

Errors are JSON `{"error", "detail"}` with status 400 (malformed input), 401 (no or bad \
token), 403 (the role may not), 404, 409 (already decided), 413 (body too large), 422 \
(well-formed but unacceptable), 429 (rate limit or quota; see `Retry-After`) or 503.

Websockets (`x-websockets` below) authenticate without a token in the URL: an \
`Authorization` header; or `Sec-WebSocket-Protocol: ironclaw.v1, bearer.<token>` \
(browsers: `new WebSocket(url, ["ironclaw.v1", "bearer." + token])`; the server \
answers `ironclaw.v1`); or a first message `{"type": "auth", "token": "..."}` within a \
few seconds. A refusal before the upgrade is an HTTP error as above; after it, an \
`{"type": "error"}` frame and close code 4000 + that status (4008: too slow).
"""


def _param(name: str, where: str, schema: Schema, description: str,
           required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema}


def _path(name: str, description: str) -> Schema:
    return _param(name, "path", {"type": "string"}, description, True)


def _limit(maximum: int, default: int) -> Schema:
    return _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum,
                                     "default": default}, "how many at most")


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, tag: str, ok: tuple[int, Schema], errors: tuple[int, ...], *,
        params: tuple[Schema, ...] = (), body: str | None = None,
        public: bool = False, description: str | None = None) -> Schema:
    status, response = ok
    responses: dict[str, Any] = {str(status): response}
    codes = set(errors) if public else set(errors) | {401, 429}
    if body is not None:
        codes |= {400, 413}
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    operation: Schema = {"summary": summary, "tags": [tag],
                         "operationId": summary.lower().replace(" ", "_").replace("'", ""),
                         "responses": responses}
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": ref(body)}}}
    if public:
        operation["security"] = []
    return operation


def _readyz() -> Schema:
    operation = _op("Readiness", "probes", (200, _json(ref("Readiness"), "ready")), (),
                    public=True, description="host.db, the gateway, delivery, sessions "
                                             "and the local channel, each checked live")
    operation["responses"]["503"] = _json(ref("Readiness"), "not ready: which check failed")
    return operation


def _paths() -> dict[str, Any]:
    change_id = _path("change_id", "the change's id")
    statuses = [s.value for s in ChangeStatus]
    return {
        "/healthz": {"get": _op("Health", "probes", (200, _json(ref("Health"), "alive")),
                                (), public=True)},
        "/readyz": {"get": _readyz()},
        "/ui/": {"get": _op("Console", "console", (200, {
            "description": "the web console's page (no token: it signs in itself)",
            "content": {"text/html": {"schema": {"type": "string"}}}}), (), public=True)},
        "/ui/{asset}": {"get": _op("Console asset", "console", (200, {
            "description": "one of the console's scripts or its style sheet",
            "content": {"text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}}}}), (404,),
            params=(_path("asset", "the file's name"),), public=True)},
        "/metrics": {"get": _op("Metrics", "probes", (200, {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}}}), ())},
        "/v1/openapi.json": {"get": _op("OpenAPI document", "meta", (200, _json(
            {"type": "object"}, "this document")), ())},
        "/v1/whoami": {"get": _op("Who am I", "meta", (200, _json(
            ref("Whoami"), "the principal the token names")), ())},
        "/v1/status": {"get": _op("Status", "meta", (200, _json(
            ref("Status"), "the sandbox runtime and its strength, and each channel's "
            "connection")), ())},
        "/v1/changes": {"post": _op(
            "Submit change", "changes", (202, _json(ref("ChangeAccepted"),
                                                    "submitted: its id and status")),
            (403, 422), body="ChangeSubmit",
            description="Runs the verifiers at once: the status may already be "
                        "rejected (a verifier said no) or applied (an opt-in policy).")},
        "/v1/changes/pending": {"get": _op(
            "Pending changes", "changes", (200, _json(ref("ChangeList"), "newest first")),
            (400,), params=(_limit(1000, 100),))},
        "/v1/changes/history": {"get": _op(
            "Change history", "changes", (200, _json(ref("ChangeList"), "newest first")),
            (400,), params=(_limit(1000, 100), _param(
                "status", "query", {"type": "string", "enum": statuses},
                "only changes in this status")))},
        "/v1/changes/{change_id}": {"get": _op(
            "Show change", "changes", (200, _json(ref("ChangeWithApprovals"), "the change, "
                                                  "with its diff and who approved it so far "
                                                  "under the two-person rule")),
            (404,), params=(change_id,))},
        "/v1/changes/{change_id}/decision": {"post": _op(
            "Decide change", "changes", (200, _json(ref("ChangeWithApprovals"), "the change "
                                                    "after the decision")),
            (403, 404, 409, 422, 503), params=(change_id,), body="DecisionRequest",
            description="Approve or reject as the token's principal. 403: the role may "
                        "not approve this kind (any decider may reject), or the "
                        "two-person rule refuses the submitter's own approval; 409: "
                        "already decided, already approved by this principal, or "
                        "refused now because the state moved. Under the two-person rule "
                        "a first approval leaves the change pending until a second, "
                        "different principal approves.")},
        "/v1/audit": {"get": _op(
            "Audit tail", "audit", (200, _json(ref("AuditTail"), "oldest first")),
            (400, 503), params=(_limit(1000, 100),))},
        "/v1/audit/verify": {"get": _op(
            "Audit verify", "audit", (200, _json(ref("AuditVerify"), "the whole chain "
                                                 "checked against its signed head")),
            (503,))},
        "/v1/audit/export": {"get": _op("Audit export", "audit", (200, {
            "description": "the log's entries as stored, one JSON object per line",
            "content": {NDJSON: {"schema": {"type": "string"}}}}), (400, 503), params=(
                _param("after_seq", "query", {"type": "integer", "minimum": 0,
                                               "maximum": 2**63 - 1, "default": 0},
                       "only entries after this seq"),))},
        "/v1/channels/local/messages": {"post": _op(
            "Post local message", "local channel", (202, _json(
                ref("LocalMessageAccepted"), "accepted: durable in the session's queue")),
            (403, 404, 422, 503), body="LocalMessage")},
        "/v1/channels/local/conversations/{conversation}/messages": {"get": _op(
            "Read local conversation", "local channel", (200, _json(
                ref("Conversation"), "user and agent messages, in order")), (400, 404),
            params=(_path("conversation", "the conversation"), _param(
                "after", "query", {"type": "integer", "minimum": -1,
                                   "maximum": 2**62, "default": -1},
                "only entries with a greater index"), _limit(1000, 200)))},
        "/v1/sessions": {"get": _op("List sessions", "sessions", (200, _json(
            ref("SessionList"), "every session; live: has a running actor")), ())},
        "/v1/sessions/{session_id}": {
            "get": _op("Show session", "sessions", (200, _json(
                ref("Session"), "the session")), (404,), params=(
                    _path("session_id", "the session's id"),)),
            "delete": _op("Delete session", "sessions", (200, _json(
                ref("SessionDeleted"), "gone: its queues, key, tasks, questions and "
                                       "delivery records")), (400, 403, 404, 409),
                params=(_path("session_id", "the session's id"), _param(
                    "workspace", "query", {"type": "string", "enum": ["true", "false"],
                                           "default": "false"},
                    "also empty its agent group's workspace (refused while another "
                    "session of the group exists)")),
                description="Owner and admin principals only (403 otherwise). Its "
                            "sandbox is stopped first. 409: quarantined (lift the hold "
                            "first), or the workspace is shared. A later message from "
                            "its chat starts a new session. Audited as session.deleted.")},
        "/v1/sessions/{session_id}/rotate-key": {"post": _op(
            "Rotate session keys", "sessions", (200, _json(
                ref("SessionKeyRotated"), "both queue files are under new keys")),
            (403, 404, 409), params=(_path("session_id", "the session's id"),),
            description="New SQLCipher keys for the session's two queue files: its "
                        "sandbox is stopped, both files are re-encrypted and verified, "
                        "the old key is forgotten and the sandbox started again. Owner "
                        "and admin principals only (403 otherwise). 409: quarantined, or "
                        "a file opens under neither key (the old key is kept). Audited "
                        "as keys.session_rotated.")},
        "/v1/registry/agent-groups": {"get": _op("List agent groups", "registry", (
            200, _json(ref("AgentGroupList"), "every agent group")), ())},
        "/v1/registry/agent-groups/{group_id}": {"get": _op(
            "Show agent group", "registry", (200, _json(ref("AgentGroup"), "the group")),
            (404,), params=(_path("group_id", "the agent group's id"),))},
        "/v1/registry/agent-groups/{group_id}/destinations": {"get": _op(
            "List destinations", "registry", (200, _json(
                ref("DestinationList"), "where the group may send")), (404,),
            params=(_path("group_id", "the agent group's id"),))},
        "/v1/mcp/servers": {"get": _op(
            "List MCP servers", "mcp", (200, _json(ref("McpServerList"), (
                "the operator's catalogue, each server with the groups granted it"))), ())},
        "/v1/mcp/servers/{name}": {"get": _op(
            "Show MCP server", "mcp", (200, _json(ref("McpServer"), "the server")), (404,),
            params=(_path("name", "the server's catalogue name"),))},
        "/v1/registry/messaging-groups": {"get": _op(
            "List messaging groups", "registry", (200, _json(
                ref("MessagingGroupList"), "every chat the control plane knows")), ())},
        "/v1/registry/messaging-groups/{group_id}": {"get": _op(
            "Show messaging group", "registry", (200, _json(
                ref("MessagingGroup"), "the messaging group")), (404,),
            params=(_path("group_id", "the messaging group's id"),))},
        "/v1/registry/messaging-groups/{group_id}/wirings": {"get": _op(
            "List messaging group wirings", "registry", (200, _json(
                ref("WiringList"), "its wirings")), (404,),
            params=(_path("group_id", "the messaging group's id"),))},
        "/v1/registry/wirings": {"get": _op("List wirings", "registry", (200, _json(
            ref("WiringList"), "every wiring")), ())},
        "/v1/questions": {"get": _op("Pending questions", "questions", (200, _json(
            ref("QuestionList"), "oldest first")), (400,), params=(
                _param("session_id", "query", {"type": "string", "maxLength": 128},
                       "only this session's"), _limit(1000, 100)))},
        "/v1/questions/{question_id}": {"get": _op("Show question", "questions", (
            200, _json(ref("Question"), "the question")), (404,), params=(
                _path("question_id", "the question's id"),))},
        "/v1/questions/{question_id}/answer": {"post": _op(
            "Answer question", "questions", (200, _json(ref("Question"), "answered")),
            (403, 404, 409, 422), params=(_path("question_id", "the question's id"),),
            body="AnswerRequest",
            description="The answer is fed back to the session that asked; "
                        "answered_by is the token's principal.")},
        "/v1/chat-approvals": {
            "get": _op("List chat approvers", "access", (200, _json(
                ref("ChatApproverList"), "owners who may decide changes from a direct "
                                         "chat; owner: still an owner")), ()),
            "post": _op(
                "Set chat approvals", "access", (200, _json(
                    ref("ChatApprovalResult"), "changed: whether it was otherwise before")),
                (403, 422), body="ChatApprovalRequest",
                description="Turn deciding changes from a direct chat with the bot on or "
                            "off for one owner (off by default). Only an owner principal "
                            "may (403 otherwise); enabling needs a current registry owner "
                            "(422 otherwise). Audited. A chat account is a weaker "
                            "credential than an API token: see the threat model.")},
        "/v1/quarantine": {"get": _op(
            "List quarantined sessions", "sessions", (200, _json(
                ref("QuarantineList"), "sessions held for proving hostile, oldest "
                                       "first; since in microseconds")), ())},
        "/v1/quarantine/{session_id}/lift": {"post": _op(
            "Lift quarantine", "sessions", (200, _json(
                ref("QuarantineLifted"), "the hold is gone; the session starts at its "
                                         "next wake")), (403, 404),
            params=(_path("session_id", "the quarantined session's id"),),
            description="Let a session held for proving hostile run again. Only an owner "
                        "principal may (403 otherwise); 404 if it is not held. Audited "
                        "as session.quarantine_lifted. Look at the session's outbound "
                        "directory first: a file still hostile quarantines it again.")},
        "/v1/principals": {
            "get": _op("List principals", "access", (200, _json(
                ref("PrincipalList"), "every principal, revoked ones included (they keep "
                                      "their names)")), (403,),
                description="Owner principals only (403 otherwise)."),
            "post": _op(
                "Add principal", "access", (201, _json(
                    ref("PrincipalToken"), "created: its token, shown this once")),
                (403, 409, 422), body="PrincipalCreate",
                description="Owner principals only (403 otherwise). 409: the name is "
                            "taken (a revoked name stays taken). Audited as "
                            "api.principal_created.")},
        "/v1/principals/{name}": {"delete": _op(
            "Revoke principal", "access", (200, _json(
                ref("PrincipalRevoked"), "revoked, for good")), (403, 404, 409),
            params=(_path("name", "the principal's name"),),
            description="Owner principals only (403 otherwise). Its token stops working "
                        "at once; its name is never reused. 409: already revoked, or the "
                        "caller's own principal. Audited as api.principal_revoked.")},
        "/v1/principals/{name}/rotate": {"post": _op(
            "Rotate principal token", "access", (200, _json(
                ref("PrincipalToken"), "the new token, shown this once")),
            (403, 404, 409), params=(_path("name", "the principal's name"),),
            description="Owner principals only (403 otherwise). The old token stops "
                        "working at once; the roles stay. 409: revoked. Audited as "
                        "api.principal_rotated.")},
        "/v1/tasks": {"get": _op(
            "List tasks", "tasks", (200, _json(ref("TaskList"), "soonest first; times in "
                                                            "microseconds")), (400,),
            params=(_param("status", "query", {"type": "string", "enum": [
                s.value for s in TaskStatus]}, "only tasks in this status (default: "
                                               "active and paused)"),
                _param("session_id", "query", {"type": "string", "maxLength": 128},
                       "only this session's"), _limit(1000, 100)),
            description="Every session's scheduled tasks. The prompt, written by the "
                        "agent, is cut to 500 characters.")},
        **{f"/v1/tasks/{{task_id}}/{verb}": {"post": _op(
            f"{verb.capitalize()} task", "tasks", (200, _json(
                ref("TaskSteered"), "the task after; changed: whether it was otherwise "
                                    "before")), (403, 404, 409),
            params=(_path("task_id", "the task's id"),),
            description=f"Owner and admin principals only (403 otherwise). 409: the "
                        f"task's status does not allow it. Audited as task.{past}.")}
           for verb, past in (("pause", "paused"), ("resume", "resumed"),
                              ("cancel", "cancelled"))},
        "/v1/access-requests": {"get": _op(
            "List access requests", "access", (200, _json(
                ref("AccessRequestList"), "oldest first; each is decided as the "
                                          "`access` change named by change_id")), (400,),
            params=(_param("status", "query", {"type": "string", "enum": [
                "pending", "granted", "denied"]}, "only requests in this status"),))},
    }


_ERRORS = {400: "malformed input", 401: "no token, or not a valid one",
           403: "the principal's role may not do this", 404: "no such thing",
           409: "conflicts with the current state", 413: "the body is too large",
           422: "well-formed but not acceptable", 429: "too many requests, or too many "
           "pending changes; retry after Retry-After seconds",
           503: "the subsystem needed is not available"}


def _error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, text in _ERRORS.items():
        response = _json(ref("Error"), text)
        if code == 429:
            response["headers"] = {"Retry-After": {"required": True, "schema": {
                "type": "string"}, "description": "seconds"}}
        responses[f"E{code}"] = response
    return responses


_WEBSOCKETS = {
    "/v1/events": {
        "summary": "Live event stream",
        "query": {"types": "comma-separated patterns: *, prefix.* or exact types",
                  "session": "only events whose session_id is this",
                  "since": "replay retained events after this seq, then continue live",
                  "batch": "frames per message, 1 to 1000 (default 1); above 1 each "
                           "message is a JSON array of the frames waiting"},
        "frames": {"event": '{"seq", "type", "at" (µs), "event": {...fields}}',
                   "stream.ready": "first frame: last_seq, principal, since",
                   "stream.lagged": "event.missed events were dropped here (slow reader)"},
        "close_codes": {"4008": "too slow: missed too many events; reconnect with since=",
                        "4400": "malformed auth message, or since= ahead of the stream",
                        "4401": "bad token", "4408": "no auth message in time",
                        "4429": "rate limited"},
    },
    "/v1/channels/local/chat": {
        "summary": "Chat with an agent over the local channel",
        "query": {"agent_group": "required", "conversation": "a wired local conversation",
                  "since_index": "replay retained entries after this index"},
        "frames": {"client": '{"type": "message", "text", "sender"?}',
                   "server": 'ready | message (a transcript entry) | accepted | error'},
        "close_codes": {"4400": "malformed auth message", "4401": "bad token",
                        "4403": "the role may not chat",
                        "4404": "no such agent group, or no wired local conversation",
                        "4408": "no auth message in time", "4429": "rate limited"},
    },
}


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "IronClaw control plane", "version": __version__,
                 "description": DESCRIPTION},
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": COMPONENTS,
            "responses": _error_responses(),
        },
        "x-websockets": _WEBSOCKETS,
    }


@functools.cache
def query_parameters() -> dict[str, frozenset[str]]:
    """For each route, as Quart spells it (``/v1/changes/<change_id>``), the query
    parameters it takes; anything else is refused."""
    allowed: dict[str, frozenset[str]] = {}
    for path, item in document()["paths"].items():
        names = {p["name"] for op in item.values() for p in op.get("parameters", ())
                 if p["in"] == "query"}
        allowed[path.replace("{", "<").replace("}", ">")] = frozenset(names)
    return allowed


@functools.cache
def document_text() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(document_text())


if __name__ == "__main__":
    main()
