"""The file tools reach a granted host mount at /mnt/<name>/..., confined to it as a
workspace path is to the workspace, and write there only when writing was granted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ironclaw.contract.agent_config import (
    AgentConfig,
    InvalidAgentConfig,
    ModelApi,
    MountedDir,
    PersonaDocs,
    ProviderConfig,
)
from sandbox_agent.mounts import Mounts
from sandbox_agent.tools import ToolContext, ToolError, all_tools
from sandbox_agent.workspace import Workspace


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    mnt = tmp_path / "mnt"
    for name in ("notes", "drop", "beside"):
        (mnt / name).mkdir(parents=True)
    (mnt / "notes" / "plan.txt").write_text("the plan")
    (mnt / "beside" / "secret.txt").write_text("not granted")
    (mnt / "drop" / "out").symlink_to(mnt / "beside")
    (tmp_path / "ws").mkdir()
    mounts = Mounts((MountedDir(Path("/mnt/notes")), MountedDir(Path("/mnt/drop"), True)),
                    under=mnt)
    return ToolContext(workspace=Workspace(tmp_path / "ws"), persona=PersonaDocs(),
                       destinations=(), mounts=mounts)


async def invoke(ctx: ToolContext, name: str, **args: Any) -> str:
    found = all_tools().get(name)
    assert found is not None
    return await found.invoke(ctx, args)


async def test_a_granted_mount_is_read_and_listed(ctx: ToolContext) -> None:
    assert await invoke(ctx, "read_file", path="/mnt/notes/plan.txt") == "the plan"
    assert await invoke(ctx, "list_dir", path="/mnt") == "drop/\nnotes/"
    assert "plan.txt" in await invoke(ctx, "list_dir", path="/mnt/notes")


async def test_writes_go_only_to_a_writable_mount(ctx: ToolContext, tmp_path: Path) -> None:
    await invoke(ctx, "write_file", path="/mnt/drop/report.txt", content="done")
    assert (tmp_path / "mnt" / "drop" / "report.txt").read_text() == "done"
    with pytest.raises(ToolError, match="read-only"):
        await invoke(ctx, "write_file", path="/mnt/notes/plan.txt", content="changed")
    assert (tmp_path / "mnt" / "notes" / "plan.txt").read_text() == "the plan"


@pytest.mark.parametrize("path", [
    "/mnt/beside/secret.txt",  # mounted nowhere: not granted
    "/mnt/notes/../beside/secret.txt",
    "/mnt/drop/out/secret.txt",  # a symlink out of the mount
    "/mnt/notes/../../ws/x",
])
async def test_nothing_beside_a_mount_is_reached(ctx: ToolContext, path: str) -> None:
    with pytest.raises(ToolError):
        await invoke(ctx, "read_file", path=path)


async def test_without_mounts_a_mount_path_is_refused(tmp_path: Path) -> None:
    bare = ToolContext(workspace=Workspace(tmp_path), persona=PersonaDocs(), destinations=())
    with pytest.raises(ToolError, match="nothing is mounted"):
        await invoke(bare, "read_file", path="/mnt/notes/plan.txt")
    assert await invoke(bare, "list_dir", path="/mnt") == "(no host directory is mounted)"


def test_the_config_carries_the_mounts_and_refuses_any_other_place() -> None:
    config = AgentConfig(session_id="ses_" + "ab" * 8, agent_group_id="demo",
                         provider=ProviderConfig(api=ModelApi.ANTHROPIC_MESSAGES, host="h",
                                                 model="m"),
                         mounts=(MountedDir(Path("/mnt/notes"), writable=True),))
    assert AgentConfig.parse(config.render()).mounts == config.mounts
    for bad in ("/etc", "/mnt/a/b", "/mnt/..", "/workspace/x"):
        text = config.render().replace('"/mnt/notes"', f'"{bad}"')
        with pytest.raises(InvalidAgentConfig):
            AgentConfig.parse(text)
