"""The agent's http_fetch and web_search tools, talking to the real broker over its
unix socket, and the rule that they exist only when the host granted egress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ironclaw.contract.agent_config import MOCK_MODEL_HOST, AgentConfig, PersonaDocs, ProviderConfig
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.ids import new_session_id
from sandbox_agent.agent import Agent
from sandbox_agent.tools import FORBIDDEN_TOOL_NAMES, ToolContext, ToolError, all_tools
from sandbox_agent.workspace import Workspace
from tests.support.egress import OTHER, SEARCH, UPSTREAM, World, open_world

WEB = {"http_fetch", "web_search"}


def ctx(tmp: Path) -> ToolContext:
    return ToolContext(workspace=Workspace(tmp), persona=PersonaDocs(), destinations=())


async def call(world: World, name: str, **args: object) -> str:
    tool = all_tools(world.route.socket_path).get(name)
    assert tool is not None
    return await tool.invoke(ctx(world.base), args)


def test_the_web_tools_exist_only_with_an_egress_socket(tmp_path: Path) -> None:
    assert not WEB & set(all_tools().names())
    assert set(all_tools(tmp_path / "egress.sock").names()) >= WEB
    assert not WEB & FORBIDDEN_TOOL_NAMES

    def agent(egress: bool, enabled: tuple[str, ...] = ()) -> Agent:
        config = AgentConfig(session_id=new_session_id(), agent_group_id="web",
                             provider=ProviderConfig("anthropic-messages", MOCK_MODEL_HOST,
                                                     "mock"),
                             egress=egress, enabled_tools=enabled, socket_dir=tmp_path)
        return Agent(config, SessionKeys.generate())

    assert not WEB & set(agent(False).registry.names())
    assert not WEB & set(agent(False, ("http_fetch",)).registry.names())
    assert set(agent(True).registry.names()) >= WEB
    # enabled_tools still narrows: the grant makes them exist, it does not force them on.
    assert set(agent(True, ("web_search",)).registry.names()) & WEB == {"web_search"}


async def test_http_fetch_returns_the_page_as_bounded_text(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        text = await call(world, "http_fetch", url=world.url("/echo/page"),
                          headers={"Accept": "application/json"})
        head, _, body = text.partition("\n\n")
        assert head.startswith(f"HTTP 200 from {world.url('/echo/page')}")
        assert "content-type: application/json" in head
        assert json.loads(body)["path"] == "/echo/page"
        posted = await call(world, "http_fetch", url=world.url("/echo"), method="post",
                            body="hello")
        assert json.loads(posted.partition("\n\n")[2])["body"] == "hello"
        long = await call(world, "http_fetch", url=world.url("/bytes/100000"))
        assert "showing the first" in long and len(long) < 50 * 1024


async def test_a_refusal_reaches_the_model_as_guidance(base: Path) -> None:
    async with open_world(base, OTHER) as world:
        with pytest.raises(ToolError) as refused:
            await call(world, "http_fetch", url=world.url("/echo"))
        message = str(refused.value)
        assert "403" in message and "host_not_allowed" in message
        assert "request_api_access" in message and UPSTREAM in message
        assert world.upstream.requests == []


async def test_web_search_lists_results(base: Path) -> None:
    async with open_world(base, SEARCH) as world:
        text = await call(world, "web_search", query="gvisor", max_results=2)
        assert text.splitlines() == [
            "1. Result 1 for gvisor", "   https://r1.example.org/", "   snippet 1 about gvisor",
            "2. Result 2 for gvisor", "   https://r2.example.org/", "   snippet 2 about gvisor"]


async def test_web_search_without_a_backend_says_so(base: Path) -> None:
    async with open_world(base, SEARCH, search_url=None) as world:
        with pytest.raises(ToolError, match="no_search_backend"):
            await call(world, "web_search", query="anything")


@pytest.mark.parametrize("args", [{}, {"url": ""}, {"url": 3}, {"url": "https://x.example/",
                                                                 "method": "PUT"},
                                  {"url": "https://x.example/", "body": "b"},
                                  {"url": "https://x.example/", "headers": {"a": 1}}])
async def test_bad_fetch_arguments_never_reach_the_broker(tmp_path: Path,
                                                          args: dict[str, object]) -> None:
    tool = all_tools(tmp_path / "absent.sock").get("http_fetch")
    assert tool is not None
    with pytest.raises(ToolError):
        await tool.invoke(ctx(tmp_path), args)


async def test_a_missing_broker_is_a_tool_error_not_a_crash(tmp_path: Path) -> None:
    tool = all_tools(tmp_path / "absent.sock").get("web_search")
    assert tool is not None
    with pytest.raises(ToolError, match="could not be reached"):
        await tool.invoke(ctx(tmp_path), {"query": "x"})
