"""Real MCP servers from PyPI, each in its own OCI sandbox, under runsc and runc.

The servers are the real ``mcp-server-time``, ``mcp-server-git`` and
``mcp-server-fetch``, in a server image built by the test from the environment's
installed copies (the three entries share one recipe, so one build serves all). The
launcher is the production one (``OciLauncher`` over ``ServerSandboxes``); the client
speaks MCP's stdio transport. Each test launches one server once, checks its real
answer, and checks that nothing of the sandbox is left once the block ends. The
default suite runs fetch under runsc and the SIGKILL reconciliation under runc;
``make test-long`` runs every server under both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from bench.mcpclient import StdioRpc, text_of
from ironclaw.host.egress.connect import ConnectProxy
from ironclaw.host.gateway.grants import EGRESS_HOSTS, Grants, set_grant
from ironclaw.host.isolation.reconcile import (
    clear_runtime_state,
    leftover_runtime_state,
    reconcile_runtime_state,
)
from ironclaw.host.isolation.runtimes import RuntimeKind
from ironclaw.host.isolation.serverimage import ServerRecipe, ensure_server_image
from ironclaw.host.isolation.serverlaunch import ServerSandboxes
from ironclaw.host.mcp.launch import McpServerEntry, ServerPlace
from ironclaw.host.mcp.sandboxed import OciLauncher
from ironclaw.host.registry import AgentGroup, Registry
from ironclaw.host.store import open_host_store
from tests.fakes.https_upstream import open_https_upstream
from tests.support.egress import GROUP, KEY, OTHER, UPSTREAM, egress_config
from tests.support.sandbox import require_runtime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")

# One runsc launch of each server in the default suite: time and git run under runsc in
# test_mcp_plane.py (through the whole plane), fetch here. Everything else is a long form.
LONG = pytest.mark.long
RUNSC = pytest.param(RuntimeKind.RUNSC, id="runsc")
LONG_RUNSC = pytest.param(RuntimeKind.RUNSC, marks=LONG, id="runsc")
LONG_RUNC = pytest.param(RuntimeKind.RUNC, marks=LONG, id="runc")
ROOT = Path(__file__).resolve().parents[2]
IMAGE = {"python": ["mcp-server-fetch", "mcp-server-git", "mcp-server-time"],
         "programs": ["git"]}
TIME = McpServerEntry("time", "mcp-server-time", ("--local-timezone", "UTC"), image=IMAGE)
GIT = McpServerEntry("git", "mcp-server-git", session_workspace=True, image=IMAGE)
FETCH = McpServerEntry("fetch", "mcp-server-fetch", ("--ignore-robots-txt",),
                       egress=(UPSTREAM,), image=IMAGE)


@pytest.fixture(scope="module")
def mcp_state(sandbox_tmp_session: Path, sandbox_image_cache: Path) -> Iterator[Path]:
    """A state directory with the three servers' images built and pinned."""
    state = sandbox_tmp_session / "mcp-state"
    state.mkdir(mode=0o711)
    for entry in (TIME, GIT, FETCH):
        ensure_server_image(state, ServerRecipe.from_table(entry.name, entry.image),
                            cache_dir=sandbox_image_cache)
    yield state
    clear_runtime_state(state)


def _traces(state: Path) -> list[str]:
    """What a stopped server may not leave: processes, containers, bundles (the parent
    cgroups are the plane's, removed when its isolator closes)."""
    return [t for t in leftover_runtime_state(state) if not t.startswith("cgroup:")]


@asynccontextmanager
async def open_rpc(kind: RuntimeKind, state: Path, entry: McpServerEntry, place: ServerPlace,
                   *, ca_bundle: Path | None = None, tunnels: ConnectProxy | None = None
                   ) -> AsyncIterator[StdioRpc]:
    runtime = require_runtime(kind, state)
    launcher = OciLauncher(ServerSandboxes(runtime, state_dir=state, ca_bundle=ca_bundle),
                           state_dir=state, tunnels=tunnels)
    async with launcher.open_server(entry, place) as pipes:
        rpc = StdioRpc(pipes.send, pipes.receive)
        with trio.fail_after(120):
            info = await rpc.initialize()
        assert info["serverInfo"]["name"]
        yield rpc
    assert _traces(state) == []


def _make_repository(repo: Path) -> None:
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=Host", "-c", "user.email=h@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.txt").write_text("hello\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first commit from the host"], check=True)


def _place(base: Path, name: str, *, workspace: Path | None = None,
           egress: Path | None = None) -> ServerPlace:
    return ServerPlace(session_id=f"sess_{name}", group=GROUP, workdir=base / "work" / name,
                       session_workspace=workspace, egress_socket=egress)


@pytest.mark.parametrize("kind", [LONG_RUNSC, LONG_RUNC])
async def test_time_in_a_zone(kind: RuntimeKind, mcp_state: Path, sandbox_tmp: Path) -> None:
    async with open_rpc(kind, mcp_state, TIME, _place(sandbox_tmp, "time")) as rpc:
        assert {"get_current_time", "convert_time"} <= await rpc.tool_names()
        with trio.fail_after(60):
            result = await rpc.call("get_current_time", {"timezone": "Asia/Tokyo"})
    assert not result.get("isError")
    assert '"timezone": "Asia/Tokyo"' in text_of(result)
    assert "+09:00" in text_of(result)


@pytest.mark.parametrize("kind", [LONG_RUNSC, LONG_RUNC])
async def test_git_log_of_a_repository_in_the_session_workspace(
        kind: RuntimeKind, mcp_state: Path, sandbox_tmp: Path) -> None:
    workspace = sandbox_tmp / "workspace"
    await trio.to_thread.run_sync(_make_repository, workspace / "repo")
    place = _place(sandbox_tmp, "git", workspace=workspace)
    async with open_rpc(kind, mcp_state, GIT, place) as rpc:
        assert "git_log" in await rpc.tool_names()
        with trio.fail_after(60):
            result = await rpc.call("git_log", {"repo_path": "/workspace/repo"})
            # The workspace is bound read-only: the server cannot change the repository.
            refused = await rpc.call("git_add", {"repo_path": "/workspace/repo",
                                                 "files": ["notes.txt"]})
    assert not result.get("isError"), text_of(result)
    assert "first commit from the host" in text_of(result)
    assert refused.get("isError")


@pytest.mark.parametrize("kind", [RUNSC, LONG_RUNC])
async def test_fetch_through_the_broker_from_a_granted_host_only(
        kind: RuntimeKind, mcp_state: Path, sandbox_tmp: Path) -> None:
    (sandbox_tmp / "pki").mkdir()
    async with open_host_store(sandbox_tmp / "host.db", KEY) as store, \
            open_https_upstream(sandbox_tmp / "pki") as upstream:
        await Registry(store).put_agent_group(AgentGroup(id=GROUP, name="Web", folder=GROUP))
        await store.call(set_grant, GROUP, EGRESS_HOSTS, [UPSTREAM, OTHER], "chg_test", 0)
        proxy = ConnectProxy(Grants(store), config=egress_config(upstream))
        socket = sandbox_tmp / "egress" / "fetch" / "proxy.sock"
        place = _place(sandbox_tmp, "fetch", egress=socket)
        async with open_rpc(kind, mcp_state, FETCH, place, ca_bundle=upstream.ca_file,
                            tunnels=proxy) as rpc:
            assert socket.is_socket()
            with trio.fail_after(90):
                granted = await rpc.call("fetch", {
                    "url": upstream.url("/echo/from-the-sandbox"), "raw": True})
                # Granted to the group, but not among the fetch server's hosts.
                refused = await rpc.call("fetch", {
                    "url": upstream.url("/echo/elsewhere", OTHER), "raw": True})
        assert not socket.exists()
    assert not granted.get("isError"), text_of(granted)
    assert "/echo/from-the-sandbox" in text_of(granted)
    assert refused.get("isError")
    assert [r.path for r in upstream.requests] == ["/echo/from-the-sandbox"]


HOLDER = """
import sys, trio
from pathlib import Path
from bench.mcpclient import StdioRpc
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind
from ironclaw.host.isolation.serverimage import verified_server_image
from ironclaw.host.isolation.serverlaunch import ServerLaunch, ServerSandboxes

async def main(state, work):
    runtime = OciRuntime.find(RuntimeKind.RUNC, state)
    image = verified_server_image(state, "time")
    launch = ServerLaunch("time", "sess_killed", image, "mcp-server-time", (), work)
    async with ServerSandboxes(runtime, state_dir=state).open(launch) as pipes:
        await StdioRpc(pipes.send, pipes.receive).initialize()
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
"""


async def test_a_killed_planes_server_sandbox_is_found_and_removed_at_start(
        mcp_state: Path, sandbox_tmp: Path) -> None:
    """The plane is SIGKILLed with a server running: nothing cleans up, and the start-up
    reconciliation of the next plane must find the server's sandbox and prove it gone."""
    require_runtime(RuntimeKind.RUNC, mcp_state)
    holder = await trio.lowlevel.open_process(
        [sys.executable, "-c", HOLDER, str(mcp_state), str(sandbox_tmp / "work")],
        stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True)
    try:
        assert holder.stdout is not None
        with trio.fail_after(120):
            assert b"ready" in await holder.stdout.receive_some(64)
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    left = _traces(mcp_state)
    assert any(t.startswith("process:") for t in left), left
    assert any("ic-mcp-" in t for t in left), left
    await trio.to_thread.run_sync(reconcile_runtime_state, mcp_state)
    assert _traces(mcp_state) == []
