"""Where an agent group's workspace is on the host: ``<state>/workspaces/<folder>``.

The same place the session actor binds at ``/workspace`` (and the disk caps mount their
volume on). The directory itself is the host's; a file can come for a group before its
first session ever ran, so it is made here as the session actor makes it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Protocol

import trio

__all__ = ["WORKSPACE_FLAGS", "GroupWorkspaces"]

# How the host opens the workspace itself, to walk below it through descriptors.
WORKSPACE_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Group(Protocol):
    @property
    def folder(self) -> str: ...


class _Groups(Protocol):
    async def get_agent_group(self, group_id: str) -> _Group: ...


class GroupWorkspaces:
    def __init__(self, state_dir: Path, groups: _Groups) -> None:
        self._root = state_dir / "workspaces"
        self._groups = groups

    async def __call__(self, agent_group_id: str) -> Path:
        group = await self._groups.get_agent_group(agent_group_id)
        path = self._root / group.folder
        await trio.to_thread.run_sync(functools.partial(
            path.mkdir, mode=0o700, parents=True, exist_ok=True))
        return path
