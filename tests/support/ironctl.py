"""A small fake of the control plane's API for the ironctl tests.

:class:`FakeApi` answers HTTP through an ``httpx.MockTransport`` handler with the
documented wire format (routes, ``{error, detail}`` errors, status codes, bearer
auth); :func:`serve_ws` runs a trio-websocket server on loopback for ``/v1/events``
and ``/v1/channels/local/chat``. Every request is recorded, so tests can check
what ironctl sent (and that the token was never in a URL).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from ironclaw.cli.ironctl import run

TOKEN = "icw_owner_" + "s3cr3t" * 6
VIEWER = "icw_viewer_" + "v13w3r" * 6
APPROVER = "icw_approver_" + "4ppr0v" * 6
T0 = 1_700_000_000_000_000


def error(status: int, word: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"error": word, "detail": detail})


def change(cid: str, kind: str = "enabled_tools", group: str = "demo", *,
           before: Any = None, after: Any = None, status: str = "pending",
           by: str = "session:s1") -> dict[str, Any]:
    return {"id": cid, "kind": kind, "agent_group": group, "status": status,
            "requested_by": by, "reason": "to read notes", "created_at": T0,
            "expires_at": None, "before": before, "after": after, "diff": [],
            "diff_lines": [], "decision": None, "applied_at": None}


@attrs.define
class FakeApi:
    requests: list[httpx.Request] = attrs.Factory(list)
    changes: dict[str, dict[str, Any]] = attrs.Factory(dict)
    audit: list[dict[str, Any]] = attrs.Factory(list)
    verify: dict[str, Any] = attrs.Factory(
        lambda: {"ok": True, "entries": 3, "problems": [], "last_seq": 3})
    transcript: list[dict[str, Any]] = attrs.Factory(list)
    ready: bool = True
    reject_kinds: set[str] = attrs.Factory(set)
    echo_token_in_errors: bool = False
    ids: Any = attrs.Factory(lambda: itertools.count(1))

    def __attrs_post_init__(self) -> None:
        self.changes["chg_1"] = change(
            "chg_1", before=[], after={"tools": ["read_file", "list_dir"]})
        self.audit = [{"seq": i, "at": T0 + i, "kind": kind, "fields": {"change_id": "chg_1"},
                       "prev": "00", "mac": "ff"}
                      for i, kind in enumerate(("change.submit", "change.verdict",
                                                "change.decision"), start=1)]

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def posted(self, route: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests
                if r.method == "POST" and r.url.path == route]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = request.url.path
        if route == "/healthz":
            return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})
        if route == "/readyz":
            checks = {"store": {"ok": True}, "gateway": {"ok": self.ready}}
            return httpx.Response(200 if self.ready else 503, json={
                "status": "ready" if self.ready else "not ready", "checks": checks})
        auth = request.headers.get("authorization", "")
        names = {f"Bearer {TOKEN}": "owner", f"Bearer {VIEWER}": "viewer",
                 f"Bearer {APPROVER}": "approver"}
        if auth not in names:
            detail = "a valid bearer token is required"
            if self.echo_token_in_errors:
                detail += f" (got {auth})"
            return error(401, "unauthorized", detail)
        if names[auth] == "viewer" and request.method == "POST":
            return error(403, "forbidden", "viewer may only read")
        body = json.loads(request.content) if request.content else None
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        parts = [unquote(p) for p in request.url.raw_path.decode().split("?")[0]
                 .split("/")[1:]]
        return self.route(request.method, parts, query, body, names[auth])

    def route(self, method: str, parts: list[str], q: dict[str, str], body: Any,
              who: str) -> httpx.Response:
        ok = httpx.Response
        match method, parts:
            case "GET", ["v1", "whoami"]:
                return ok(200, json={"name": who, "roles": [who]})
            case "GET", ["v1", "status"]:
                return ok(200, json={"runtime": "runc", "runtime_strength": "shared-kernel",
                                     "runtime_warning": "runc shares the host kernel",
                                     "channels": [{"channel": "local", "instance": "",
                                                   "status": "up"}]})
            case "POST", ["v1", "changes"]:
                cid = f"chg_n{next(self.ids)}"
                before: Any = None if body["kind"] == "create_agent" else {}
                status = "rejected" if body["kind"] in self.reject_kinds else "pending"
                self.changes[cid] = change(cid, body["kind"], body["agent_group"],
                                           before=before, after=body["payload"],
                                           status=status, by=who)
                if status == "rejected":
                    self.changes[cid]["decision"] = {
                        "outcome": "reject", "decided_by": "verifier:packages",
                        "decided_at": T0, "reason": "package 'evil' is denied"}
                return ok(202, json={"id": cid, "status": status})
            case "GET", ["v1", "changes", "pending"]:
                found = [c for c in self.changes.values() if c["status"] == "pending"]
                return ok(200, json={"changes": found[: int(q.get("limit", 100))]})
            case "GET", ["v1", "changes", "history"]:
                found = [c for c in self.changes.values()
                         if q.get("status") in (None, c["status"])]
                return ok(200, json={"changes": found})
            case "GET", ["v1", "changes", cid]:
                if cid not in self.changes:
                    return error(404, "not_found", f"no change {cid!r}")
                return ok(200, json=self.changes[cid])
            case "POST", ["v1", "changes", cid, "decision"]:
                target = self.changes.get(cid)
                if target is None:
                    return error(404, "not_found", f"no change {cid!r}")
                if who == "approver" and target["kind"] == "create_agent" \
                        and body["outcome"] == "approve":
                    return error(403, "forbidden", "approver may not approve create_agent")
                if target["status"] != "pending":
                    return error(409, "conflict", f"change {cid} is already "
                                                  f"{target['status']}")
                target["decision"] = {"outcome": body["outcome"], "decided_by": who,
                                     "decided_at": T0, "reason": body.get("reason")}
                target["status"] = "applied" if body["outcome"] == "approve" else "rejected"
                return ok(200, json=target)
            case "GET", ["v1", "audit"]:
                return ok(200, json={"entries": self.audit[-int(q.get("limit", 100)):]})
            case "GET", ["v1", "audit", "verify"]:
                return ok(200, json=self.verify)
            case "GET", ["v1", "audit", "export"]:
                after = int(q.get("after_seq", 0))
                text = "".join(json.dumps(e) + "\n" for e in self.audit if e["seq"] > after)
                return ok(200, content=text.encode(),
                          headers={"content-type": "application/x-ndjson"})
            case "POST", ["v1", "channels", "local", "messages"]:
                return self.post_message(body)
            case "GET", ["v1", "channels", "local", "conversations", conv, "messages"]:
                after, limit = int(q.get("after", -1)), int(q.get("limit", 200))
                shown = [e for e in self.transcript if e["index"] > after][:limit]
                return ok(200, json={"conversation": conv, "messages": shown})
            case "GET", ["v1", "sessions"]:
                return ok(200, json={"sessions": [SESSION, {**SESSION, "id": "s2",
                                                            "live": False}]})
            case "GET", ["v1", "sessions", sid]:
                if sid != SESSION["id"]:
                    return error(404, "not_found", f"no session {sid!r}")
                return ok(200, json=SESSION)
            case "GET", ["v1", "registry", "agent-groups"]:
                return ok(200, json={"agent_groups": [AGENT]})
            case "GET", ["v1", "registry", "agent-groups", gid]:
                if gid != "demo":
                    return error(404, "not_found", f"no agent group {gid!r}")
                return ok(200, json=AGENT)
            case "GET", ["v1", "registry", "agent-groups", _, "destinations"]:
                return ok(200, json={"destinations": []})
            case "GET", ["v1", "registry", "messaging-groups"]:
                return ok(200, json={"messaging_groups": [MESSAGING_GROUP]})
            case "GET", ["v1", "registry", "wirings"]:
                return ok(200, json={"wirings": [WIRING]})
            case "GET", ["v1", "questions"]:
                return ok(200, json={"questions": [QUESTION]})
            case "POST", ["v1", "questions", qid, "answer"]:
                return ok(200, json={**QUESTION, "id": qid, "status": "answered",
                                     "answer": body["answer"], "answered_by": who})
            case "GET", ["v1", "access-requests"]:
                return ok(200, json={"access_requests": [ACCESS]})
        return error(404, "not_found", "The requested URL was not found on the server.")

    def post_message(self, body: dict[str, Any]) -> httpx.Response:
        if body["agent_group"] != "demo":
            return error(404, "not_found", f"no agent group {body['agent_group']!r}")
        mid = f"local-{next(self.ids)}"
        self.add_entry("user", body["sender"], body["text"], mid)
        self.add_entry("agent", "Demo", f"echo: {body['text']}", f"out-{mid}")
        return httpx.Response(202, json={"message_id": mid, "conversation": "demo"})

    def add_entry(self, role: str, sender: str, text: str, mid: str) -> dict[str, Any]:
        entry = {"index": len(self.transcript), "role": role, "sender": sender,
                 "text": text, "at": T0, "message_id": mid, "thread_id": None}
        self.transcript.append(entry)
        return entry


SESSION = {"id": "s1", "agent_group_id": "demo", "messaging_group_id": "mg1",
           "thread_id": None, "mode": "shared", "status": "active",
           "container_status": "running", "created_at": T0, "last_active": T0, "live": True}
AGENT = {"id": "demo", "name": "Demo", "folder": "demo", "provider": "mock",
         "model": "mock", "persona": {"identity": "You are Demo.", "soul": "",
                                      "instructions": "Echo."},
         "enabled_tools": ["read_file"], "created_at": T0, "updated_at": T0}
MESSAGING_GROUP = {"id": "mg1", "channel": "local", "platform_id": "demo",
                   "instance": "local", "unknown_sender_policy": "public", "name": "demo",
                   "created_at": T0}
WIRING = {"id": "w1", "messaging_group_id": "mg1", "agent_group_id": "demo",
          "engage_mode": "pattern", "pattern": ".*", "sender_scope": "all",
          "ignored_policy": "drop", "session_mode": "shared", "priority": 0}
QUESTION = {"id": "q1", "session_id": "s1", "agent_group_id": "demo",
            "question": "Which colour?", "options": ["red", "blue"],
            "allow_freeform": False, "status": "pending", "asked_at": T0, "answer": None,
            "answered_by": None, "answered_at": None}
ACCESS = {"id": "ar1", "messaging_group_id": "mg1", "user_id": "telegram:42",
          "status": "pending", "requested_at": T0, "decided_by": None, "decided_at": None,
          "change_id": "chg_access_ar1"}


@attrs.define
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


async def ironctl(fake: FakeApi | None, *argv: str, stdin: str = "",
                  env: dict[str, str] | None = None, token: str | None = TOKEN) -> Result:
    out, err = io.StringIO(), io.StringIO()
    environ = {"PATH": ""} if env is None else dict(env)
    if token is not None:
        environ.setdefault("IRONCLAW_API_TOKEN", token)
    code = await run(list(argv), env=environ, stdin=io.StringIO(stdin), stdout=out,
                     stderr=err, transport=fake.transport if fake else None)
    return Result(code, out.getvalue(), err.getvalue())


# Websockets.

Handler = Callable[[WebSocketRequest, dict[str, str]], Awaitable[None]]


@attrs.define
class WsServer:
    port: int
    seen: list[tuple[str, dict[str, str]]]  # (resource, headers) per upgrade

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def serve_ws(nursery: trio.Nursery, handler: Handler) -> WsServer:
    seen: list[tuple[str, dict[str, str]]] = []

    async def accept(request: WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        seen.append((request.path, headers))
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        if headers.get("authorization") != f"Bearer {TOKEN}":
            await request.reject(401, body=json.dumps(
                {"error": "unauthorized", "detail": "a valid bearer token is required"}
            ).encode())
            return
        with contextlib.suppress(ConnectionClosed):  # the client went away: fine
            await handler(request, query)

    server = await nursery.start(serve_websocket, accept, "127.0.0.1", 0, None)
    return WsServer(server.port, seen)
