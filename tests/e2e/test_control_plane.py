"""The whole control plane in one process: local channel -> router -> encrypted
queues -> a real sandbox_agent subprocess -> model proxy (mock) -> delivery -> local
channel. Exactly once, through real parts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_TOOLS
from ironclaw.host.modelproxy import Credentials
from tests.support.plane import dev_plane_config

CONV = DEMO_CONVERSATION


def config(tmp_path: Path) -> ControlPlaneConfig:
    return dev_plane_config(tmp_path / "state", tmp_path / "keys")


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlaneHandles]:
    async with trio.open_nursery() as nursery:
        handles = await nursery.start(ControlPlane(config(tmp_path),
                                                   credentials=Credentials()).run)
        yield handles
        nursery.cancel_scope.cancel()


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(CONV)
    await plane.local.post(CONV, "operator", text)
    with trio.fail_after(60):
        return (await plane.local.wait_for_reply(CONV, after_index=mark)).text


def agent_lines(plane: ControlPlaneHandles) -> list[str]:
    return [e.text for e in plane.local.transcript(CONV) if e.role == "agent"]


async def until_agent_says(plane: ControlPlaneHandles, predicate: object) -> None:
    """Wait reply by reply (never spinning) until one satisfies ``predicate``."""
    mark = -1
    while True:
        lines = [e for e in plane.local.transcript(CONV) if e.role == "agent"]
        if any(predicate(e.text) for e in lines):  # type: ignore[operator]
            return
        if lines:
            mark = max(mark, lines[-1].index)
        await plane.local.wait_for_reply(CONV, after_index=mark)


async def test_a_message_is_answered_exactly_once(plane: ControlPlaneHandles) -> None:
    assert await ask(plane, "hello") == "echo: hello"
    assert await ask(plane, "again") == "echo: again"
    assert agent_lines(plane) == ["echo: hello", "echo: again"]


async def test_tool_directive_reaches_a_real_tool(plane: ControlPlaneHandles) -> None:
    reply = await ask(plane, "tool:read_persona {}")
    assert reply.startswith("tool result:") and "Demo" in reply


async def test_scheduled_task_fires_when_due(plane: ControlPlaneHandles) -> None:
    run_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    directive = json.dumps({"prompt": "water the plants", "run_at": run_at})
    await ask(plane, f"tool:schedule_task {directive}")
    with trio.fail_after(60):
        await until_agent_says(plane, lambda text: text == "echo: [task] water the plants")
    assert agent_lines(plane).count("echo: [task] water the plants") == 1


async def test_question_is_answered_and_the_answer_reaches_the_agent(
        plane: ControlPlaneHandles) -> None:
    directive = json.dumps({"question": "Which colour?", "options": ["red", "blue"]})
    await ask(plane, f"tool:ask_user_question {directive}")
    with trio.fail_after(30):
        await until_agent_says(plane, lambda text: "Which colour?" in text)
    session = (await plane.registry.list_sessions())[0]
    (question,) = await plane.questions.pending(session.id)
    assert not any(line.startswith("echo:") and "red" in line for line in agent_lines(plane))
    await plane.questions.answer(question.id, "red", "local:operator")
    with trio.fail_after(60):
        await until_agent_says(plane, lambda text: text.startswith("echo:") and "red" in text)


async def test_capability_request_waits_for_a_human_then_applies_once(
        plane: ControlPlaneHandles) -> None:
    from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
    from ironclaw.host.gateway import Principal

    directive = json.dumps({"kind": "enabled_tools",
                            "payload": {"tools": ["read_file", "list_dir"]},
                            "reason": "to read notes"})
    await ask(plane, f"tool:request_capability_change {directive}")
    async with plane.events.subscribe("change.submitted", since=0) as submitted:
        with trio.fail_after(30):
            await submitted.receive()
    (change,) = await plane.gateway.pending()
    assert change.change.kind.value == "enabled_tools"
    assert change.change.requested_by.startswith("session:")
    # Nothing is applied while it waits for a human: the demo lacks read_file.
    assert (await plane.registry.get_agent_group("demo")).enabled_tools == DEMO_TOOLS
    assert "unknown tool 'read_file'" in await ask(plane, 'tool:read_file {"path": "x"}')
    owner = Principal("operator", frozenset({"owner"}))
    decided = await plane.gateway.decide(change.change.id, DecisionOutcome.APPROVE, owner)
    assert decided.status is ChangeStatus.APPLIED
    group = await plane.registry.get_agent_group("demo")
    assert group.enabled_tools == ("read_file", "list_dir")
    # The agent is told, through a system row, and says so.
    with trio.fail_after(60):
        await until_agent_says(plane, lambda text: change.change.id in text
                               and "applied" in text)
    # The respawned agent has the tool it was granted.
    assert "unknown tool" not in await ask(plane, 'tool:read_file {"path": "x"}')
    report = await plane.audit.verify()
    assert report.ok, report.problems
    kinds = [entry.kind for entry in await plane.audit.tail(100)]
    for stage in ("change.submit", "change.decision", "change.apply"):
        assert stage in kinds
    assert "sandbox.launched" in kinds  # gated actions are audited too


async def test_a_model_change_respawns_the_live_agent_on_a_provider_the_host_holds(
        plane: ControlPlaneHandles) -> None:
    from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
    from ironclaw.host.gateway import Principal

    owner = Principal("operator", frozenset({"owner"}))
    assert await ask(plane, "hello") == "echo: hello"
    # No Anthropic key on this host: the move is refused before anyone approves it.
    refused = await plane.gateway.submit("model", "demo", {"provider": "anthropic"},
                                         requested_by=owner)
    assert refused.status is ChangeStatus.REJECTED
    async with plane.events.subscribe("session.started") as started:
        stored = await plane.gateway.submit("model", "demo", {"model": "mock-2"},
                                            requested_by=owner)
        decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE, owner)
        assert decided.status is ChangeStatus.APPLIED
        with trio.fail_after(60):
            await started.receive()
    assert (await plane.registry.get_agent_group("demo")).model == "mock-2"
    assert await ask(plane, "again") == "echo: again"
