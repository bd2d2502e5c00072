"""The MCP broker against the real ``mcp-server-time`` from PyPI, run by the process
launcher: what it lists, what it runs, and that the grant, read for every request,
decides both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from ironclaw.host.mcp import McpCatalogEntry, McpServerEntry, servers
from ironclaw.host.mcp.servers import Scope
from tests.support.mcp import GROUP, hostile_server, open_world, time_server


async def test_granted_tools_are_listed_with_schemas_and_a_call_gets_the_real_answer(
        base: Path) -> None:
    async with open_world(base, time_server()) as world:
        await world.grant({"time": "*"})
        session = await world.session()
        tools = await session.tools()
        assert set(tools) == {"time__get_current_time", "time__convert_time"}
        schema = tools["time__get_current_time"]["input_schema"]
        assert schema["type"] == "object" and "timezone" in schema["properties"]
        answer = await session.call("time__get_current_time", {"timezone": "Asia/Tokyo"})
        assert answer.status_code == 200, answer.text
        assert '"timezone": "Asia/Tokyo"' in answer.json()["content"]
        assert answer.json()["is_error"] is False
        call = world.calls()[-1]
        assert (call.server, call.tool, call.outcome) == ("time", "get_current_time", "ok")
        assert call.request_bytes > 0 and call.response_bytes > 0
        assert "Asia/Tokyo" not in repr(call)  # sizes, never content


async def test_the_allowlist_narrows_the_list_and_a_revocation_bites_at_the_next_call(
        base: Path) -> None:
    async with open_world(base, time_server()) as world:
        await world.grant({"time": ["get_current_time"]})
        session = await world.session()
        assert set(await session.tools()) == {"time__get_current_time"}
        refused = await session.call("time__convert_time", {
            "source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"})
        assert refused.status_code == 403
        assert refused.json()["error"] == "not_granted"
        ok = await session.call("time__get_current_time", {"timezone": "UTC"})
        assert ok.status_code == 200
        await world.grant({})
        after = await session.call("time__get_current_time", {"timezone": "UTC"})
        assert after.status_code == 403
        assert await session.tools() == {}


async def test_an_ungranted_server_is_invisible_and_unreachable(base: Path) -> None:
    async with open_world(base, time_server(), hostile_server()) as world:
        await world.grant({"time": "*"})
        session = await world.session()
        assert not [name for name in await session.tools() if name.startswith("hostile")]
        refused = await session.call("hostile__echo", {"text": "hi"})
        assert refused.status_code == 403
        # Never started: nothing of it ran for this session.
        assert not [s for s in world.servers() if s.server == "hostile"]


async def test_a_grant_naming_a_server_outside_the_catalogue_offers_nothing(
        base: Path) -> None:
    async with open_world(base, time_server()) as world:
        await world.grant({"elsewhere": "*"})
        assert not await world.broker.granted(GROUP)
        await world.grant({"time": "*", "elsewhere": "*"})
        assert await world.broker.granted(GROUP)
        session = await world.session()
        assert set(await session.tools()) == {"time__get_current_time",
                                              "time__convert_time"}
        assert (await session.call("elsewhere__anything")).status_code == 403


async def test_stopping_the_session_stops_its_servers_and_removes_the_socket(
        base: Path) -> None:
    async with open_world(base, time_server()) as world:
        await world.grant({"time": "*"})
        session = await world.session()
        await session.tools()
        await world.broker.stop_session(session.route.session_id)
        assert not session.route.socket_path.exists()
        states = [(s.server, s.state, s.reason) for s in world.servers()]
        assert states == [("time", "started", ""), ("time", "stopped", "session_stopped")]


@pytest.mark.parametrize(("scope", "instances"), [(Scope.SESSION, 2), (Scope.GROUP, 1)])
async def test_the_instance_scope_decides_who_shares_a_server(
        base: Path, monkeypatch: pytest.MonkeyPatch, scope: Scope, instances: int) -> None:
    monkeypatch.setattr(servers, "INSTANCE_SCOPE", scope)
    async with open_world(base, hostile_server()) as world:
        await world.grant({"hostile": ["echo"]})
        one, two = await world.session(), await world.session()
        for session in (one, two):
            assert (await session.call("hostile__echo", {"text": "x"})).status_code == 200
        assert len(world.servers()) == instances
        await world.broker.stop_session(one.route.session_id)
        # A shared instance outlives the first session, and serves the second still.
        assert len([s for s in world.servers() if s.state == "stopped"]) == instances - 1
        assert (await two.call("hostile__echo", {"text": "y"})).json()["content"] == "y"
        await world.broker.stop_session(two.route.session_id)
        assert len([s for s in world.servers() if s.state == "stopped"]) == instances
        # Each instance had a writable directory of its own: the session's, or the group's.
        workdirs = await trio.to_thread.run_sync(
            lambda: [p for p in base.rglob("hostile") if p.is_dir()])
        assert len(workdirs) == instances
        assert (scope is Scope.GROUP) == (workdirs[0] == base / "mcp" / GROUP / "hostile")


async def test_the_real_git_server_reads_a_log_from_the_granted_repository(
        base: Path) -> None:
    repo = base / "workspace" / "notes"
    await trio.to_thread.run_sync(_make_repo, repo)
    git = McpCatalogEntry(McpServerEntry(name="git", command="mcp-server-git",
                                         args=("--repository", str(repo))))
    async with open_world(base, git) as world:
        await world.grant({"git": ["git_log", "git_status"]})
        session = await world.session()
        assert set(await session.tools()) == {"git__git_log", "git__git_status"}
        answer = await session.call("git__git_log", {"repo_path": str(repo)})
        assert answer.status_code == 200, answer.text
        assert "first note, from the test" in answer.json()["content"]
        # The server's own confinement answers as a tool error, not a broken instance.
        outside = await session.call("git__git_log", {"repo_path": str(base)})
        assert outside.status_code == 200 and outside.json()["is_error"] is True
        assert (await session.call("git__git_commit", {"repo_path": str(repo),
                                                       "message": "x"})).status_code == 403


def _make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "note.txt").write_text("hello\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "HOME": str(path), "PATH": "/usr/bin:/bin"}
    for argv in (["git", "init", "-q"], ["git", "add", "note.txt"],
                 ["git", "commit", "-q", "-m", "first note, from the test"]):
        subprocess.run(argv, cwd=path, env=env, check=True)
