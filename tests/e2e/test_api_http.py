"""The HTTP API against a real control plane: auth, roles, the change flow through the
gateway, audit, limits, the local channel and the read-only views."""

from __future__ import annotations

import functools
import json
import re
import secrets
from pathlib import Path

import httpx
import pytest
import trio

from ironclaw.host.api import ApiSettings, BindRefused, openapi_document, serve_api
from ironclaw.host.config.devseed import DEMO_TOOLS as SEEDED_TOOLS
from tests.support.api import Api, default_settings, running_api  # noqa: F401

GRANTED_TOOLS = {"tools": [*SEEDED_TOOLS, "read_file"]}
KEPT_DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def documented_get_paths() -> list[str]:
    paths = []
    for path, item in openapi_document()["paths"].items():
        if "get" in item:
            paths.append(re.sub(r"\{[^}]+\}", "x", path))
    return paths


async def submit(api: Api, body: dict[str, object], who: str = "owner") -> str:
    response = await api.post("/v1/changes", body, who)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_probes_are_open_and_every_other_route_needs_a_valid_token(api: Api) -> None:
    assert (await api.client.get(api.url + "/healthz")).json()["status"] == "ok"
    ready = await api.client.get(api.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    for path in [*documented_get_paths(), "/v1/no-such-route"]:
        if path in ("/healthz", "/readyz") or path.startswith("/ui/"):
            continue  # the probes, and the console's files (the same bytes for everyone)
        for headers in ({}, {"Authorization": "Bearer icw_wrong-token-0123456789"},
                        {"Authorization": f"Basic {api.tokens['owner']}"},
                        {"Authorization": "Bearer"}):
            response = await api.client.get(api.url + path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A POST without a token is refused before its body is looked at.
    response = await api.client.post(api.url + "/v1/changes", json={"kind": "persona"})
    assert response.status_code == 401
    assert (await api.get("/v1/no-such-route")).status_code == 404
    assert (await api.get("/v1/whoami", "viewer")).json() == {"name": "viewer",
                                                              "roles": ["viewer"]}


async def test_a_revoked_principal_is_locked_out(api: Api) -> None:
    assert (await api.get("/v1/sessions", "admin")).status_code == 200
    assert await api.principals.revoke("admin")
    with trio.fail_after(15):
        while (await api.get("/v1/sessions", "admin")).status_code != 401:  # noqa: ASYNC110
            await trio.sleep(0.5)


async def test_a_viewer_reads_but_cannot_submit_or_decide(api: Api) -> None:
    change_id = await submit(api, {"kind": "enabled_tools", "agent_group": "demo",
                                   "payload": GRANTED_TOOLS})
    assert (await api.get("/v1/changes/pending", "viewer")).status_code == 200
    refused = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "approve"},
                             "viewer")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    refused = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "reject"},
                             "viewer")
    assert refused.status_code == 403
    assert (await api.post("/v1/changes", {"kind": "persona", "agent_group": "demo",
                                           "payload": {"soul": "x"}}, "viewer")
            ).status_code == 403
    shown = (await api.get(f"/v1/changes/{change_id}", "viewer")).json()
    assert shown["status"] == "pending" and shown["decision"] is None


async def test_an_approver_may_reject_what_it_may_not_approve(api: Api) -> None:
    change_id = await submit(api, {"kind": "egress", "agent_group": "demo",
                                   "payload": {"hosts": ["api.example.com"]}})
    refused = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "approve"},
                             "approver")
    assert refused.status_code == 403, refused.text
    assert (await api.get(f"/v1/changes/{change_id}")).json()["status"] == "pending"
    rejected = await api.post(f"/v1/changes/{change_id}/decision",
                              {"outcome": "reject", "reason": "not now"}, "approver")
    assert rejected.status_code == 200, rejected.text
    body = rejected.json()
    assert body["status"] == "rejected"
    assert body["decision"]["decided_by"] == "approver"
    assert body["decision"]["reason"] == "not now"


async def test_a_change_goes_pending_approved_applied_and_audited_over_http(api: Api) -> None:
    change_id = await submit(api, {"kind": "enabled_tools", "agent_group": "demo",
                                   "payload": GRANTED_TOOLS, "reason": "to read notes",
                                   "ttl_seconds": 3600})
    pending = (await api.get("/v1/changes/pending")).json()["changes"]
    (shown,) = [c for c in pending if c["id"] == change_id]
    assert shown["kind"] == "enabled_tools" and shown["agent_group"] == "demo"
    assert shown["status"] == "pending" and shown["requested_by"] == "owner"
    assert shown["before"] == {"tools": list(SEEDED_TOOLS)}
    assert shown["after"] == GRANTED_TOOLS
    assert shown["diff_lines"] == [f'+ /tools/{len(SEEDED_TOOLS)}: "read_file"']
    assert shown["expires_at"] > shown["created_at"]
    # Nothing applies before the decision.
    group = (await api.get("/v1/registry/agent-groups/demo")).json()
    assert group["enabled_tools"] == list(SEEDED_TOOLS)
    # The decider is the token's principal; a body cannot name one.
    sneaky = await api.post(f"/v1/changes/{change_id}/decision",
                            {"outcome": "approve", "decided_by": "owner"}, "approver")
    assert sneaky.status_code == 400
    decided = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "approve"},
                             "approver")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "applied"
    assert decided.json()["decision"]["decided_by"] == "approver"
    group = (await api.get("/v1/registry/agent-groups/demo")).json()
    assert group["enabled_tools"] == GRANTED_TOOLS["tools"]
    again = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "reject"})
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert (await api.post("/v1/changes/chg_nope/decision", {"outcome": "approve"})
            ).status_code == 404
    assert (await api.get("/v1/changes/chg_nope")).status_code == 404
    history = (await api.get("/v1/changes/history?status=applied")).json()["changes"]
    assert [c["id"] for c in history] == [change_id]

    verify = (await api.get("/v1/audit/verify")).json()
    assert verify["ok"] is True and verify["problems"] == [] and verify["entries"] >= 4
    entries = (await api.get("/v1/audit?limit=1000")).json()["entries"]
    stages = [e["kind"] for e in entries if e["fields"].get("change_id") == change_id]
    assert stages == ["change.submit", "change.verdict", "change.decision", "change.apply"]
    decision = next(e for e in entries if e["kind"] == "change.decision")
    assert decision["fields"]["decided_by"] == "approver"
    exported = await api.get("/v1/audit/export")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert {"change.submit", "change.apply"} <= {e["kind"] for e in lines}
    after = await api.get(f"/v1/audit/export?after_seq={lines[-2]['seq']}")
    assert [json.loads(x)["seq"] for x in after.text.splitlines()] == [lines[-1]["seq"]]


async def test_oversized_bodies_get_413_declared_or_streamed(api: Api) -> None:
    big = {"kind": "persona", "agent_group": "demo", "payload": {"soul": "x" * 70_000}}
    response = await api.post("/v1/changes", big)
    assert response.status_code == 413 and response.json()["error"] == "too_large"

    async def chunks() -> object:
        for _ in range(20):
            yield b" " * 8192
        yield json.dumps(big).encode()

    response = await api.client.post(api.url + "/v1/changes", content=chunks(),  # type: ignore[arg-type]
                                     headers={**api.auth(), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert (await api.get("/v1/changes/pending")).json()["changes"] == []


async def test_bad_input_is_a_4xx_with_a_json_error_never_a_500(api: Api) -> None:
    cases: list[tuple[str, bytes, int]] = [
        ("/v1/changes", b"{", 400),
        ("/v1/changes", b"[1, 2]", 400),
        ("/v1/changes", b'{"kind": "persona", "kind": "mounts"}', 400),
        ("/v1/changes", b'{"kind": "teleport", "agent_group": "demo", "payload": 1}', 400),
        ("/v1/changes", b'{"kind": "persona", "agent_group": "../x", "payload": 1}', 400),
        ("/v1/changes", b'{"kind": "persona", "agent_group": "demo", "payload": 1, '
                        b'"ttl_seconds": -1}', 400),
        ("/v1/changes", b'{"kind": "persona", "agent_group": "demo", "payload": 1, '
                        b'"ttl_seconds": true}', 400),
        ("/v1/changes", b"\xff\xfe", 400),
        ("/v1/changes", b'{"kind": "persona", "agent_group": "demo", "payload": '
                        + b"[" * 100 + b"]" * 100 + b"}", 400),
        ("/v1/changes/x/decision", b'{"outcome": "maybe"}', 400),
        ("/v1/questions/q_nope/answer", b'{"answer": "yes"}', 404),
        ("/v1/channels/local/messages", b'{"agent_group": "demo", "sender": "a"}', 400),
        ("/v1/channels/local/messages",
         b'{"agent_group": "ghost", "sender": "a", "text": "hi"}', 404),
    ]
    for path, body, status in cases:
        response = await api.client.post(api.url + path, content=body, headers=api.auth())
        assert response.status_code == status, (path, body[:60], response.text)
        assert set(response.json()) == {"error", "detail"}
    for query, status in (("limit=0", 400), ("limit=abc", 400), ("limit=1001", 400),
                          ("limit=5", 200)):
        assert (await api.get(f"/v1/audit?{query}")).status_code == status, query
    assert (await api.get("/v1/changes/history?status=lost")).status_code == 400
    assert (await api.client.delete(api.url + "/v1/changes", headers=api.auth())
            ).status_code == 405


async def test_local_channel_message_and_conversation(api: Api) -> None:
    mark = api.handles.local.cursor("demo")
    response = await api.post("/v1/channels/local/messages",
                              {"agent_group": "demo", "sender": "alice", "text": "hello"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["conversation"] == "demo"
    with trio.fail_after(60):
        await api.handles.local.wait_for_reply("demo", after_index=mark)
    conversation = (await api.get("/v1/channels/local/conversations/demo/messages")).json()
    assert [(m["role"], m["sender"], m["text"]) for m in conversation["messages"]] == [
        ("user", "alice", "hello"), ("agent", "agent", "echo: hello")]
    assert conversation["messages"][0]["message_id"] == accepted["message_id"]
    indexes = [m["index"] for m in conversation["messages"]]
    later = await api.get(f"/v1/channels/local/conversations/demo/messages?after={indexes[0]}")
    assert [m["index"] for m in later.json()["messages"]] == indexes[1:]
    assert (await api.get("/v1/channels/local/conversations/nowhere/messages")
            ).status_code == 404
    # Roles: a viewer may not post; an approver only as itself; an admin as anyone.
    body = {"agent_group": "demo", "sender": "operator", "text": "let me in"}
    assert (await api.post("/v1/channels/local/messages", body, "viewer")).status_code == 403
    assert (await api.post("/v1/channels/local/messages", body, "approver")
            ).status_code == 403
    own = {**body, "sender": "approver"}
    assert (await api.post("/v1/channels/local/messages", own, "approver")).status_code == 202
    assert (await api.post("/v1/channels/local/messages", body, "admin")).status_code == 202
    sessions = (await api.get("/v1/sessions")).json()["sessions"]
    assert [s["agent_group_id"] for s in sessions] == ["demo"]
    shown = (await api.get(f"/v1/sessions/{sessions[0]['id']}")).json()
    assert shown["id"] == sessions[0]["id"]


async def test_posting_never_wires_a_conversation_the_gateway_did_not(api: Api) -> None:
    change_id = await submit(api, {"kind": "create_agent", "agent_group": "scribe",
                                   "payload": {"name": "Scribe", "folder": "scribe"}})
    decided = await api.post(f"/v1/changes/{change_id}/decision", {"outcome": "approve"})
    assert decided.json()["status"] == "applied", decided.text
    assert (await api.get("/v1/registry/agent-groups/scribe")).status_code == 200
    before = (await api.get("/v1/registry/messaging-groups")).json()
    refused = await api.post("/v1/channels/local/messages",
                             {"agent_group": "scribe", "sender": "alice", "text": "hi"})
    assert refused.status_code == 404 and "wiring" in refused.json()["detail"]
    refused = await api.post("/v1/channels/local/messages",
                             {"agent_group": "scribe", "conversation": "demo",
                              "sender": "alice", "text": "hi"})
    assert refused.status_code == 404
    assert (await api.get("/v1/registry/messaging-groups")).json() == before
    wirings = (await api.get("/v1/registry/wirings")).json()["wirings"]
    assert [(w["id"], w["agent_group_id"]) for w in wirings] == [("demo-local", "demo")]


async def test_registry_reads(api: Api) -> None:
    groups = (await api.get("/v1/registry/agent-groups", "viewer")).json()["agent_groups"]
    assert [g["id"] for g in groups] == ["demo"]
    assert groups[0]["persona"]["identity"].startswith("You are Demo")
    messaging = (await api.get("/v1/registry/messaging-groups")).json()["messaging_groups"]
    (demo,) = [m for m in messaging if m["platform_id"] == "demo"]
    wirings = (await api.get(f"/v1/registry/messaging-groups/{demo['id']}/wirings")).json()
    assert [w["id"] for w in wirings["wirings"]] == ["demo-local"]
    assert (await api.get(f"/v1/registry/messaging-groups/{demo['id']}")).json() == demo
    assert (await api.get("/v1/registry/agent-groups/demo/destinations")).json() == {
        "destinations": []}
    for missing in ("/v1/registry/agent-groups/ghost", "/v1/registry/messaging-groups/mg_x",
                    "/v1/registry/messaging-groups/mg_x/wirings", "/v1/sessions/nope",
                    "/v1/questions/q_nope", "/v1/registry/agent-groups/ghost/destinations"):
        assert (await api.get(missing)).status_code == 404, missing
    assert (await api.get("/v1/access-requests?status=pending")).json() == {
        "access_requests": []}


async def test_a_question_is_answered_over_http_by_the_token_principal(api: Api) -> None:
    directive = json.dumps({"question": "Which colour?", "options": ["red", "blue"]})
    response = await api.post("/v1/channels/local/messages", {
        "agent_group": "demo", "sender": "alice",
        "text": f"tool:ask_user_question {directive}"})
    assert response.status_code == 202
    with trio.fail_after(60):
        while not (questions := (await api.get("/v1/questions")).json()["questions"]):  # noqa: ASYNC110
            await trio.sleep(0.1)
    (question,) = questions
    assert question["question"] == "Which colour?" and question["status"] == "pending"
    assert (await api.post(f"/v1/questions/{question['id']}/answer", {"answer": "2"},
                           "viewer")).status_code == 403
    assert (await api.post(f"/v1/questions/{question['id']}/answer", {"answer": "green"},
                           "approver")).status_code == 422
    answered = await api.post(f"/v1/questions/{question['id']}/answer", {"answer": "2"},
                              "approver")
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == "blue"
    assert answered.json()["answered_by"] == "approver"
    assert (await api.post(f"/v1/questions/{question['id']}/answer", {"answer": "red"})
            ).status_code == 409
    assert (await api.get("/v1/questions")).json()["questions"] == []


async def test_metrics_count_what_the_bus_carries(api: Api) -> None:
    mark = api.handles.local.cursor("demo")
    await api.post("/v1/channels/local/messages",
                   {"agent_group": "demo", "sender": "alice", "text": "count me"})
    with trio.fail_after(60):
        await api.handles.local.wait_for_reply("demo", after_index=mark)
    await submit(api, {"kind": "persona", "agent_group": "demo", "payload": {"soul": "x"}})
    with trio.fail_after(10):
        while True:
            text = (await api.get("/metrics")).text
            if "ironclaw_messages_delivered_total 1.0" in text:
                break
            await trio.sleep(0.05)
    assert "ironclaw_messages_received_total 1.0" in text
    assert 'ironclaw_messages_routed_total{decision="engaged"} 1.0' in text
    assert 'ironclaw_model_calls_total{outcome="ok"}' in text
    assert "ironclaw_changes_pending 1.0" in text
    assert 'ironclaw_changes_total{event="submitted"} 1.0' in text
    assert "ironclaw_sessions_live 1.0" in text
    assert re.search(r"ironclaw_event_loop_lag_seconds_count [1-9]", text)
    assert "ironclaw_event_loop_lag_max_seconds " in text
    assert re.search(r'ironclaw_api_requests_total\{method="POST",status="202"\} 2\.0', text)
    assert (await api.client.get(api.url + "/metrics")).status_code == 401


async def test_the_served_document_is_the_one_in_the_repo(api: Api) -> None:
    served = await api.get("/v1/openapi.json")
    assert served.status_code == 200
    assert served.text == KEPT_DOCUMENT.read_text(encoding="utf-8")
    assert served.json()["openapi"] == "3.1.0"



async def test_a_public_bind_is_refused_without_the_flag_and_shutdown_is_graceful(
        api: Api) -> None:
    with pytest.raises(BindRefused):
        await serve_api(api.handles, ApiSettings(host="0.0.0.0", port=0),
                        token_key=secrets.token_bytes(32))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(
            serve_api, api.handles, ApiSettings(port=0, graceful_timeout=1.0),
            token_key=secrets.token_bytes(32),
            shutdown=stop))
        assert binds[0].startswith("http://127.0.0.1:")
        assert (await api.client.get(binds[0] + "/healthz")).status_code == 200
        stop.set()  # the server (and its metrics subscriber) stop; the nursery closes
    with pytest.raises(httpx.ConnectError):
        await api.client.get(binds[0] + "/healthz")
