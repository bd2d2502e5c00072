"""A principal scoped to agent groups reads only what is about them: every route of
the API is walked from its route table, so a new route without a scope decision, or a
listing nobody checked, fails here. Listings leave out the other group's objects; a
direct look at one answers 404 in the same words as one that does not exist."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio

from ironclaw.contract.actions import AskUserQuestion, ScheduleTask
from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import SessionMode
from ironclaw.host.api.app import create_app
from ironclaw.host.api.scope import Scope, scope_of
from ironclaw.host.api.server import build_context
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.gateway import Principal
from ironclaw.host.registry import AgentGroup, Wiring
from tests.support.api import (  # noqa: F401
    TEST_SETTINGS,
    Api,
    default_settings,
    receive_json,
    running_api,
)

OTHER = "zebra"  # a name that appears nowhere else in any answer
HOUR_US = 3600 * 1_000_000


@attrs.frozen
class World:
    """The other group's objects (what the scoped principals must not see)."""

    ids: dict[str, str]

    def marks(self) -> list[str]:
        return list(self.ids.values())


async def _objects_of(api: Api, group: str, chat: str) -> dict[str, str]:
    handles = api.handles
    mg = await handles.registry.ensure_messaging_group("local", chat)
    if group != DEMO_GROUP:
        await handles.registry.put_wiring(Wiring(id=f"w-{group}", messaging_group_id=mg.id,
                                                 agent_group_id=group))
    session = await handles.registry.resolve_session(group, mg.id, None, SessionMode.SHARED)
    owner = Principal("owner", frozenset({"owner"}))
    change = await handles.gateway.submit("persona", group, {"soul": f"calm {group}"},
                                          requested_by=owner)
    task = await handles.scheduler.schedule(
        session_id=session.id, agent_group_id=group,
        request=ScheduleTask(f"later {group}", now_us() + HOUR_US, None, "UTC", None))
    question = await handles.questions.ask(
        session_id=session.id, agent_group_id=group,
        request=AskUserQuestion(f"which {group}?", ("a", "b"), False))
    request, _ = await handles.registry.request_access(mg.id, f"local:stranger-{group}")
    handles.quarantine.hold(session.id, group, "test hold")
    await handles.audit.append("session.deleted", session_id=session.id, by="test")
    return {"group": group, "chat": mg.id, "conversation": chat, "session": session.id,
            "change": change.change.id, "task": task.id, "question": question.id,
            "access": request.id}


@pytest.fixture
async def world(api: Api) -> World:
    await api.handles.registry.put_agent_group(AgentGroup(id=OTHER, name="Zebra",
                                                          folder=OTHER))
    await _objects_of(api, DEMO_GROUP, "demo")
    ids = await _objects_of(api, OTHER, "zebra-chat")
    api.tokens["scoped"] = await api.principals.create("scoped", {"viewer"},
                                                       agent_groups={DEMO_GROUP})
    api.tokens["scoped-admin"] = await api.principals.create(
        "scoped-admin", {"admin"}, agent_groups={DEMO_GROUP})
    api.tokens["lonely"] = await api.principals.create("lonely", {"viewer"},
                                                       agent_groups={"nobody"})
    return World(ids)


# Listings: GET routes without parameters that show objects of agent groups.
LISTINGS = ("/v1/registry/agent-groups", "/v1/registry/messaging-groups",
            "/v1/registry/wirings", "/v1/sessions", "/v1/questions", "/v1/access-requests",
            "/v1/changes/pending", "/v1/changes/history", "/v1/audit", "/v1/audit/export",
            "/v1/tasks", "/v1/quarantine")
# Direct routes: the route, its method and the other group's object it names.
DIRECT = {
    "/v1/registry/agent-groups/<group_id>": ("GET", "group"),
    "/v1/registry/agent-groups/<group_id>/destinations": ("GET", "group"),
    "/v1/registry/messaging-groups/<group_id>": ("GET", "chat"),
    "/v1/registry/messaging-groups/<group_id>/wirings": ("GET", "chat"),
    "/v1/sessions/<session_id>": ("GET", "session"),
    "/v1/sessions/<session_id>/rotate-key": ("POST", "session"),
    "/v1/questions/<question_id>": ("GET", "question"),
    "/v1/questions/<question_id>/answer": ("POST", "question"),
    "/v1/changes/<change_id>": ("GET", "change"),
    "/v1/changes/<change_id>/decision": ("POST", "change"),
    "/v1/tasks/<task_id>/pause": ("POST", "task"),
    "/v1/tasks/<task_id>/resume": ("POST", "task"),
    "/v1/tasks/<task_id>/cancel": ("POST", "task"),
    "/v1/channels/local/conversations/<conversation>/messages": ("GET", "conversation"),
}
# Scoped routes checked by their own tests below.
OWN_TESTS = {"/v1/status", "/v1/events", "/v1/channels/local/chat", "/v1/changes",
             "/v1/channels/local/messages", "DELETE /v1/sessions/<session_id>"}
BODIES = {"answer": {"answer": "a"}, "decision": {"outcome": "approve"}}


def _rules(api: Api) -> list[tuple[str, str, Scope | None]]:
    app = create_app(build_context(api.handles, TEST_SETTINGS, api.handles.api_token_key))
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}) or ["GET"]
        for method in methods:
            found.append((method, rule.rule, scope_of(app.view_functions[rule.endpoint])))
    return found


def _key(method: str, rule: str) -> str:
    return rule if f"{method} {rule}" not in OWN_TESTS else f"{method} {rule}"


async def test_every_route_decides_its_scope_and_each_decision_is_checked(
        api: Api, world: World) -> None:
    undecided = [f"{m} {r}" for m, r, s in _rules(api) if s is None]
    assert not undecided, f"routes without a scope decision: {undecided}"
    for method, rule, decision in _rules(api):
        key = _key(method, rule)
        if decision is Scope.UNSCOPED:
            path = rule.replace("<name>", "owner").replace("<session_id>", "x")
            refused = await api.client.request(method, api.url + path, json={},
                                               headers=api.auth("scoped-admin"))
            assert refused.status_code == 403, (method, rule, refused.text)
        elif decision is Scope.FILTERED:
            assert key in OWN_TESTS or (method == "GET" and rule in LISTINGS) or \
                rule in DIRECT, f"no scope check for {method} {rule}: add one here"


async def test_a_listing_shows_a_scoped_principal_only_its_groups(
        api: Api, world: World) -> None:
    for route in LISTINGS:
        mine = (await api.get(route, who="scoped")).text
        everything = (await api.get(route)).text
        assert any(mark in everything for mark in world.marks()), (route, everything[:300])
        assert not [mark for mark in world.marks() if mark in mine], (route, mine[:300])
        assert DEMO_GROUP in mine or "session.deleted" in mine, (route, mine[:300])


async def test_another_groups_object_is_as_missing_as_one_that_never_was(
        api: Api, world: World) -> None:
    async def call(route: str, value: str, who: str) -> Any:
        method, _ = DIRECT[route]
        body = BODIES.get(route.rsplit("/", 1)[-1], {})
        path = route.split("<")[0] + value + route.split(">", 1)[1]
        return await api.client.request(method, api.url + path, headers=api.auth(who),
                                        json=body if method == "POST" else None)

    for route, (method, what) in sorted(DIRECT.items()):
        target = world.ids[what]
        hidden = await call(route, target, "scoped-admin")
        missing = await call(route, "nothing-here", "owner")
        assert hidden.status_code == missing.status_code == 404, (route, hidden.text)
        assert hidden.text.replace(target, "nothing-here") == missing.text, route
        if method == "GET":
            assert (await call(route, target, "owner")).status_code == 200, route


async def test_the_scoped_routes_with_their_own_rules(api: Api, world: World) -> None:
    other = world.ids
    deleted = await api.client.delete(api.url + f"/v1/sessions/{other['session']}",
                                      headers=api.auth("scoped-admin"))
    assert deleted.status_code == 404
    posted = await api.post("/v1/channels/local/messages",
                            {"agent_group": OTHER, "sender": "scoped-admin", "text": "hi"},
                            who="scoped-admin")
    missing = await api.post("/v1/channels/local/messages",
                             {"agent_group": "nothing-here", "sender": "scoped-admin",
                              "text": "hi"}, who="scoped-admin")
    assert posted.status_code == missing.status_code == 404
    assert posted.text.replace(OTHER, "nothing-here") == missing.text
    submitted = await api.post("/v1/changes", {"kind": "persona", "agent_group": OTHER,
                                               "payload": {"soul": "x"}}, who="scoped-admin")
    assert submitted.status_code == 403
    status = (await api.get("/v1/status", who="scoped")).json()["channels"]
    assert [c["channel"] for c in status] == ["local"]
    assert (await api.get("/v1/status", who="lonely")).json()["channels"] == []


async def test_a_scoped_audit_tail_counts_its_limit_after_the_filter(
        api: Api, world: World) -> None:
    """The newest entry is the other group's: a tail of one still shows one of ours,
    as the task and question listings count their limit after the filter."""
    await api.handles.audit.append("session.deleted", session_id=world.ids["session"],
                                   by="test")
    newest = (await api.get("/v1/audit?limit=1")).json()["entries"]
    assert newest[0]["fields"]["session_id"] == world.ids["session"]
    mine = (await api.get("/v1/audit?limit=1", who="scoped")).json()["entries"]
    assert len(mine) == 1 and OTHER not in json.dumps(mine)


async def test_the_event_stream_carries_only_the_scoped_groups_events(
        api: Api, world: World) -> None:
    async with api.ws("/v1/events?since=0", who="scoped") as ws:
        frames = [await receive_json(ws)]
        with trio.move_on_after(1.0):
            while True:
                frames.append(await receive_json(ws))
    text = json.dumps(frames)
    assert not [mark for mark in world.marks() if mark in text], text[:400]
    assert any(frame["type"] == "change.submitted" for frame in frames), text[:400]
    async with api.ws("/v1/events?since=0") as ws:
        frames = [await receive_json(ws)]
        with trio.move_on_after(1.0):
            while True:
                frames.append(await receive_json(ws))
    assert world.ids["change"] in json.dumps(frames)
