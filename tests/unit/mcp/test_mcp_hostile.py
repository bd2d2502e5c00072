"""Hostile MCP servers are contained like hostile agents: a server that floods, hangs,
babbles or names its tools after the agent's own is refused, costs the host a bounded
amount, and neither its session's other servers nor other sessions notice.
The server is ``tests/fakes/mcp_hostile_server.py``, misbehaving on demand."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.support.mcp import hostile_server, open_world

OFFERED = {"hostile__echo", "hostile__huge", "hostile__hang", "hostile__garbage",
           "hostile__exit", "hostile__bad_result"}


async def test_tool_names_that_pose_as_built_ins_or_break_the_naming_rule_are_refused(
        base: Path) -> None:
    async with open_world(base, hostile_server()) as world:
        await world.grant({"hostile": "*"})
        session = await world.session()
        assert set(await session.tools()) == OFFERED
        started = world.servers()[-1]
        assert (started.state, started.tools, started.refused_tools) == ("started", 6, 4)
        posing = await session.call("hostile__send_message")
        assert (posing.status_code, posing.json()["error"]) == (404, "not_granted")


@pytest.mark.parametrize(("tool", "reason"), [
    ("huge", "message_too_large"), ("garbage", "malformed"), ("exit", "closed"),
    ("bad_result", "malformed")])
async def test_a_server_that_breaks_the_protocol_is_stopped_and_the_next_call_starts_anew(
        base: Path, tool: str, reason: str) -> None:
    async with open_world(base, hostile_server(), max_message_bytes=64 * 1024) as world:
        await world.grant({"hostile": "*"})
        session, bystander = await world.session(), await world.session()
        assert (await bystander.call("hostile__echo", {"text": "one"})).status_code == 200
        answer = await session.call(f"hostile__{tool}")
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"] == "server_failed"
        stopped = [s for s in world.servers() if s.state == "stopped"]
        assert [s.reason for s in stopped] == [reason]
        assert stopped[0].session_id == session.route.session_id
        # The same session gets a fresh instance; the other session never noticed.
        again = await session.call("hostile__echo", {"text": "again"})
        assert again.status_code == 200 and again.json()["content"] == "again"
        assert (await bystander.call("hostile__echo", {"text": "two"})).json()[
            "content"] == "two"


async def test_a_server_that_never_answers_is_cancelled_at_the_deadline(base: Path) -> None:
    async with open_world(base, hostile_server(), call_timeout_s=1.0) as world:
        await world.grant({"hostile": "*"})
        session = await world.session()
        answer = await session.call("hostile__hang")
        assert answer.status_code == 504
        assert answer.json()["error"] == "timeout"
        assert world.calls()[-1].outcome == "timeout"
        assert [s.reason for s in world.servers() if s.state == "stopped"] == ["timeout"]
        assert (await session.call("hostile__echo", {"text": "x"})).status_code == 200


@pytest.mark.parametrize("mode", ["list_garbage", "list_huge", "init_hang", "list_hang"])
async def test_a_server_that_fails_its_listing_is_left_out_and_the_others_still_list(
        base: Path, mode: str) -> None:
    # The well-behaved neighbour is the tiny fake too: it starts well inside the short
    # start deadline even on a busy machine, where mcp-server-time may take seconds.
    async with open_world(base, hostile_server("good", name="steady"), hostile_server(mode),
                          start_timeout_s=3.0, max_message_bytes=64 * 1024) as world:
        await world.grant({"steady": ["echo"], "hostile": "*"})
        session = await world.session()
        assert set(await session.tools()) == {"steady__echo"}
        failed = [s for s in world.servers() if s.server == "hostile"]
        assert [s.state for s in failed] == ["failed"]


async def test_the_tool_count_of_a_server_is_capped(base: Path) -> None:
    async with open_world(base, hostile_server("many_tools"),
                          max_tools_per_server=10) as world:
        await world.grant({"hostile": "*"})
        session = await world.session()
        assert len(await session.tools()) == 10
        assert world.servers()[-1].refused_tools == 490


async def test_a_session_s_call_budget_and_the_request_size_are_capped(base: Path) -> None:
    async with open_world(base, hostile_server(), max_calls_per_session=2,
                          max_request_bytes=1024) as world:
        await world.grant({"hostile": "*"})
        session = await world.session()
        too_big = await session.call("hostile__echo", {"text": "x" * 2048})
        assert too_big.status_code == 413
        for _ in range(2):
            assert (await session.call("hostile__echo", {"text": "x"})).status_code == 200
        spent = await session.call("hostile__echo", {"text": "x"})
        assert spent.status_code == 429
        assert spent.json()["error"] == "call_budget_spent"
        other = await world.session()
        assert (await other.call("hostile__echo", {"text": "y"})).status_code == 200


async def test_a_hanging_call_holds_no_other_session_up(base: Path) -> None:
    async with open_world(base, hostile_server(), call_timeout_s=30.0) as world:
        await world.grant({"hostile": "*"})
        stuck, free = await world.session(), await world.session()

        async def cut_off() -> None:
            with pytest.raises(httpx.RemoteProtocolError):
                await stuck.call("hostile__hang")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut_off)
            answer = await free.call("hostile__echo", {"text": "meanwhile"})
            assert answer.json()["content"] == "meanwhile"
            await world.broker.stop_session(stuck.route.session_id)
        assert not stuck.route.socket_path.exists()


async def test_a_hostile_agent_s_malformed_requests_are_refused_and_the_socket_serves_on(
        base: Path) -> None:
    async with open_world(base, hostile_server()) as world:
        await world.grant({"hostile": ["echo"]})
        session = await world.session()
        async with session.client() as client:
            for method, path, body, status in [
                    ("POST", "/v1/call", b"not json", 400),
                    ("POST", "/v1/call", b'["hostile__echo"]', 400),
                    ("POST", "/v1/call", b'{"name": "hostile__echo", "arguments": []}', 400),
                    ("POST", "/v1/call", b'{"name": 7}', 400),
                    ("POST", "/v1/call", b'{"name": "hostile__echo", "extra": 1}', 400),
                    ("GET", "/v1/call", b"", 404),
                    ("POST", "/v1/tools", b"", 404),
                    ("GET", "/v1/fetch", b"", 404)]:
                answer = await client.request(method, path, content=body)
                assert answer.status_code == status, (path, body, answer.text)
                assert set(answer.json()) == {"error", "detail"}
        assert (await session.call("hostile__echo", {"text": "still"})).json()[
            "content"] == "still"
        assert len([c for c in world.calls() if c.status >= 400]) == 8
