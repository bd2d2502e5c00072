"""What every channel's file test checks, whatever the platform: the agent's view of an
attachment (the block at the end of the message) and where the file landed."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import attrs

from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_GROUP

__all__ = ["ELF", "PNG", "enable_file_tools", "stored_path", "workspace_file"]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(48)
ELF = b"\x7fELF\x02\x01\x01" + bytes(48)
_STORED = re.compile(r"^- (inbox/ses_[0-9a-f]+/[A-Za-z0-9_-]+/[^\n]+) \(([a-z/+.-]+), "
                     r"(\d+) bytes\)$", re.MULTILINE)


def stored_path(reply: str, media_type: str, size: int) -> str:
    """The workspace path the agent was told of, checked against type and size."""
    found = _STORED.search(reply)
    assert found is not None, f"no stored file in {reply!r:.500}"
    assert (found.group(2), int(found.group(3))) == (media_type, size)
    return found.group(1)


async def enable_file_tools(plane: ControlPlaneHandles) -> None:
    """Test setup, not the subject: the demo agent starts without the file tools (in
    production an approved ``enabled_tools`` change adds them)."""
    group = await plane.registry.get_agent_group(DEMO_GROUP)
    await plane.registry.put_agent_group(attrs.evolve(group, enabled_tools=(
        *group.enabled_tools, "read_file", "write_file", "send_file")))


async def workspace_file(plane: ControlPlaneHandles, relative: str) -> Path:
    """The file on the host, checked to be plain, readable and never executable."""
    group = await plane.registry.get_agent_group(DEMO_GROUP)
    path = plane.config.state_dir / "workspaces" / group.folder / relative
    mode = path.lstat().st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o640
    return path
