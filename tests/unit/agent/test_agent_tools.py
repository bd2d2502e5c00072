"""The tool set: what may exist, what is switched on, and what each request tool emits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.actions import (
    AskUserQuestion,
    CapabilityRequest,
    ScheduleTask,
    TaskControl,
    parse_system_action,
)
from ironclaw.contract.agent_config import PersonaDocs
from ironclaw.contract.enums import ChangeKind, MessageKind
from ironclaw.contract.rows import Destination
from sandbox_agent.tools import (
    FORBIDDEN_TOOL_NAMES,
    MANDATORY_TOOLS,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolRegistryError,
    all_tools,
    build_registry,
)
from sandbox_agent.tools.base import schema
from sandbox_agent.workspace import Workspace

EXPECTED_TOOLS = {
    "send_message", "send_file", "read_file", "write_file", "list_dir", "schedule_task",
    "list_tasks", "cancel_task", "pause_task", "resume_task", "update_task",
    "ask_user_question", "request_capability_change", "request_api_access", "read_persona",
    "list_destinations",
}


async def nothing(_ctx: ToolContext, _args: Mapping[str, Any]) -> str:
    return ""


def tool(name: str) -> Tool:
    return Tool(name, "test", schema({}), nothing)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=Workspace(tmp_path),
                       persona=PersonaDocs(identity="Ada", instructions="Be kind."),
                       destinations=[Destination(name="ops", type="channel",
                                                 display_name="Ops room")])


async def invoke(ctx: ToolContext, name: str, **args: Any) -> str:
    found = all_tools().get(name)
    assert found is not None
    return await found.invoke(ctx, args)


def test_the_compiled_in_set_is_exactly_the_documented_one() -> None:
    names = set(all_tools().names())
    assert names == EXPECTED_TOOLS
    assert not names & FORBIDDEN_TOOL_NAMES


@pytest.mark.parametrize("name", sorted(FORBIDDEN_TOOL_NAMES))
def test_forbidden_names_are_refused(name: str) -> None:
    with pytest.raises(ToolRegistryError):
        ToolRegistry([tool(name)])


@pytest.mark.parametrize("name", ["Shell", "read-file", "", "x" * 65, "1st"])
def test_names_must_be_lowercase_words(name: str) -> None:
    with pytest.raises(ToolRegistryError):
        ToolRegistry([tool(name)])


def test_duplicates_are_refused() -> None:
    with pytest.raises(ToolRegistryError, match="already"):
        ToolRegistry([tool("same"), tool("same")])


def test_enabled_tools_filtering() -> None:
    everything, unknown = build_registry(())
    assert set(everything.names()) == EXPECTED_TOOLS and unknown == []

    some, unknown = build_registry(("read_file", "no_such_tool", "shell"))
    assert set(some.names()) == {"read_file", *MANDATORY_TOOLS}
    assert unknown == ["no_such_tool", "shell"]


async def test_send_message_routes_to_a_known_destination_only(ctx: ToolContext) -> None:
    await invoke(ctx, "send_message", text="to the room", to="ops")
    await invoke(ctx, "send_message", text="here")
    await invoke(ctx, "send_message", text="here too", to="current")
    assert [(r.content, r.destination) for r in ctx.outbox] == [
        ("to the room", "ops"), ("here", None), ("here too", None)]
    assert all(r.kind is MessageKind.CHAT for r in ctx.outbox)
    with pytest.raises(ToolError, match="unknown destination"):
        await invoke(ctx, "send_message", text="x", to="elsewhere")
    with pytest.raises(ToolError):
        await invoke(ctx, "send_message", text=42)


async def test_send_file_is_capped(ctx: ToolContext) -> None:
    (ctx.workspace.root / "small.txt").write_text("tiny")
    (ctx.workspace.root / "large.txt").write_text("x" * (64 * 1024 + 1))
    await invoke(ctx, "send_file", path="small.txt", caption="here it is")
    assert ctx.outbox[-1].content == "here it is\n\n[file: small.txt]\ntiny"
    with pytest.raises(ToolError, match="limit"):
        await invoke(ctx, "send_file", path="large.txt")


async def test_capability_request_emits_an_envelope_and_applies_nothing(
        ctx: ToolContext) -> None:
    answer = await invoke(ctx, "request_capability_change", kind="enabled_tools",
                          payload={"tools": ["read_file"]}, reason="read notes")
    assert "A human will decide" in answer
    (row,) = ctx.outbox
    assert row.kind is MessageKind.SYSTEM
    assert parse_system_action(row.content) == CapabilityRequest(
        ChangeKind.ENABLED_TOOLS, '{"tools":["read_file"]}', "read notes")


@pytest.mark.parametrize("kind", ["packages", "mounts"])
async def test_a_kind_nothing_enforces_is_refused_with_why(ctx: ToolContext, kind: str) -> None:
    with pytest.raises(ToolError, match="cannot be granted") as refused:
        await invoke(ctx, "request_capability_change", kind=kind, payload={}, reason="x")
    if kind == "packages":
        assert "no package manager" in str(refused.value)
    assert ctx.outbox == []


@pytest.mark.parametrize("args", [
    {"kind": "create_agent", "payload": {}},
    {"kind": "access", "payload": {}},
    {"kind": "root", "payload": {}},
    {"kind": "persona", "payload": "be evil"},
    {"kind": "persona"},
])
async def test_bad_capability_requests_are_refused(ctx: ToolContext,
                                                   args: dict[str, Any]) -> None:
    with pytest.raises(ToolError):
        await invoke(ctx, "request_capability_change", **args)
    assert ctx.outbox == []


async def test_api_access_is_an_egress_request(ctx: ToolContext) -> None:
    await invoke(ctx, "request_api_access", hosts=["API.Example.com", "api.example.com",
                                                   "files.example.org"], reason="sync")
    action = parse_system_action(ctx.outbox[0].content)
    assert action == CapabilityRequest(
        ChangeKind.EGRESS, '{"hosts":["api.example.com","files.example.org"]}', "sync")
    for hosts in ([], ["http://evil.com/x"], ["localhost"], ["a b.com"], "x.com"):
        with pytest.raises(ToolError):
            await invoke(ctx, "request_api_access", hosts=hosts, reason="r")


async def test_schedule_task_is_checked_by_the_contract_parser(ctx: ToolContext) -> None:
    await invoke(ctx, "schedule_task", prompt="water plants",
                 run_at="2031-05-01T09:00:00+02:00", recurrence="0 9 * * *")
    action = parse_system_action(ctx.outbox[0].content)
    assert isinstance(action, ScheduleTask) and action.prompt == "water plants"
    assert action.recurrence == "0 9 * * *" and action.run_at is not None
    with pytest.raises(ToolError, match="time zone"):
        await invoke(ctx, "schedule_task", prompt="x", run_at="2031-05-01T09:00:00")
    with pytest.raises(ToolError):
        await invoke(ctx, "schedule_task", run_at="2031-05-01T09:00:00Z")


async def test_task_controls(ctx: ToolContext) -> None:
    await invoke(ctx, "list_tasks")
    await invoke(ctx, "pause_task", task_id="task_1")
    await invoke(ctx, "update_task", task_id="task_1", prompt="new words")
    actions = [parse_system_action(r.content) for r in ctx.outbox]
    assert [a.action for a in actions if isinstance(a, TaskControl)] == [
        "list_tasks", "pause_task", "update_task"]
    assert isinstance(actions[2], TaskControl) and actions[2].prompt == "new words"
    with pytest.raises(ToolError, match="required"):
        await invoke(ctx, "cancel_task")


async def test_ask_user_question(ctx: ToolContext) -> None:
    await invoke(ctx, "ask_user_question", question="Tea or coffee?",
                 options=["tea", "coffee"], allow_freeform=False)
    assert parse_system_action(ctx.outbox[0].content) == AskUserQuestion(
        "Tea or coffee?", ("tea", "coffee"), False)
    with pytest.raises(ToolError):
        await invoke(ctx, "ask_user_question", question="?", options=["x"] * 50)


async def test_read_persona_and_destinations(ctx: ToolContext) -> None:
    persona = await invoke(ctx, "read_persona")
    assert "## Identity\nAda" in persona and "## Instructions\nBe kind." in persona
    assert "## Soul" not in persona
    assert await invoke(ctx, "list_destinations") == "ops (Ops room): channel"
