"""Granted host mounts as the file tools see them.

A ``mounts`` change an operator approved binds host directories at ``/mnt/<name>``
(the host lists them in the agent config). The file tools take an absolute path
``/mnt/<name>/...`` as a path in that mount, confined to it exactly as a workspace
path is to the workspace (``Workspace``: no ``..``, every symlink resolved and checked
to stay inside); every other path is the workspace's. A mount is read-only unless its
grant said otherwise, and the tools refuse a write there before the kernel would.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import attrs

from ironclaw.contract.agent_config import MOUNTS_DIR, MountedDir

from .workspace import Workspace, WorkspaceError

PREFIX = str(MOUNTS_DIR)


@attrs.frozen
class _Mounted:
    directory: Workspace
    writable: bool


class Mounts:
    def __init__(self, dirs: Iterable[MountedDir] = (), *, under: Path = MOUNTS_DIR) -> None:
        """``under``: where the mounts are (tests give a host directory)."""
        self._by_name = {d.path.name: _Mounted(Workspace(under / d.path.name), d.writable)
                         for d in dirs}

    @staticmethod
    def names_a_mount(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def names(self) -> list[str]:
        return sorted(f"{name}/" for name in self._by_name)

    def place(self, path: str, *, write: bool) -> tuple[Workspace, str]:
        """The mount ``path`` (``/mnt/<name>/rest``) lies in, and ``rest`` in it."""
        name, _, rest = path.removeprefix(PREFIX + "/").partition("/")
        mounted = self._by_name.get(name)
        if mounted is None:
            known = ", ".join(f"{PREFIX}/{n}" for n in sorted(self._by_name)) or "none"
            raise WorkspaceError(f"nothing is mounted at {PREFIX}/{name!r:.80}; "
                                 f"mounted: {known}")
        if write and not mounted.writable:
            raise WorkspaceError(f"{PREFIX}/{name} is mounted read-only")
        return mounted.directory, rest or "."
