"""Where an MCP server instance runs: the launcher seam between the broker and a runtime.

The broker (:mod:`ironclaw.host.mcp.broker`) speaks MCP over a pair of byte streams and
does not care what is at the other end. A :class:`McpServerLauncher` starts one server
instance for one session (:class:`ServerPlace`) from one catalogue entry
(:class:`McpServerEntry`) and hands back its stdio as :class:`StdioPipes`; leaving the
context manager stops the instance and cleans up after it, however the block ends.

:class:`ProcessLauncher` runs the command as a plain child process of the control plane:
no isolation at all, so it serves only the ``process`` runtime (``--dev`` and tests). The
OCI runtimes register their own launcher in :data:`LAUNCHERS`; :func:`launcher_for_runtime`
picks one by the runtime's name.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ironclaw.runtime import open_child_process

__all__ = [
    "LAUNCHERS",
    "LauncherUnavailable",
    "McpServerEntry",
    "McpServerLauncher",
    "ProcessLauncher",
    "ServerPlace",
    "StdioPipes",
    "launcher_for_runtime",
]

# A stopped server gets this long after SIGTERM before SIGKILL: MCP servers hold no
# state we must let them save.
_GRACE_PERIOD = 2.0
# How much of a server's stderr is kept (for the log when it dies; never forwarded).
_STDERR_TAIL_BYTES = 16 * 1024


@attrs.frozen
class McpServerEntry:
    """One entry of the operator's ``[[mcp.servers]]`` catalogue, parsed and checked."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    egress: tuple[str, ...] = ()  # hosts the server may reach; none by default
    session_workspace: bool = False  # bind the session's workspace read-only at /workspace
    image: Mapping[str, Any] = attrs.field(factory=dict)  # what the server's image holds


@attrs.frozen
class ServerPlace:
    """Where one server instance lives: whose it is and which host paths it gets."""

    session_id: str
    group: str
    workdir: Path  # its own writable workspace (host path), made by the caller
    session_workspace: Path | None  # the session's workspace, when the entry asks for it
    egress_socket: Path | None  # its egress broker socket, when the entry has egress


@attrs.frozen
class StdioPipes:
    """The server's stdin (``send``) and stdout (``receive``), as raw byte streams."""

    send: trio.abc.SendStream
    receive: trio.abc.ReceiveStream


class McpServerLauncher(Protocol):
    def open_server(self, entry: McpServerEntry, place: ServerPlace
                    ) -> AbstractAsyncContextManager[StdioPipes]: ...


class LauncherUnavailable(RuntimeError):
    """No MCP server launcher is registered for the runtime asked for."""


@attrs.frozen
class ProcessLauncher:
    """Run the server as a plain child process, in ``place.workdir``, with an almost
    empty environment. No isolation: the ``process`` runtime's launcher only.

    The command is looked up on ``path`` (by default the directory of the running
    interpreter, where console scripts of installed packages live, then the system's).
    """

    path: str = attrs.field(factory=lambda: _default_path())  # defined below

    @asynccontextmanager
    async def _open(self, entry: McpServerEntry, place: ServerPlace
                    ) -> AsyncIterator[StdioPipes]:
        executable = shutil.which(entry.command, path=self.path)
        if executable is None:
            raise FileNotFoundError(f"MCP server {entry.name!r}: command "
                                    f"{entry.command!r} not found")
        # Never the plane's own environment (it holds secrets). No bytecode writes: the
        # server must not leave files in the interpreter's tree, which others run too.
        env = {"PATH": self.path, "HOME": str(place.workdir), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        async with open_child_process(
                (executable, *entry.args), env=env, cwd=place.workdir,
                grace_period=_GRACE_PERIOD, stderr_tail_bytes=_STDERR_TAIL_BYTES,
                pipe_stdio=True, check=False) as child:
            assert child.stdin is not None and child.stdout is not None
            yield StdioPipes(send=child.stdin, receive=child.stdout)

    def open_server(self, entry: McpServerEntry, place: ServerPlace
                    ) -> AbstractAsyncContextManager[StdioPipes]:
        return self._open(entry, place)


def _default_path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                            "/bin"])


# The runtime's name (``process``, ``runsc``, ``runc``, ``crun``) -> how to make its
# launcher. The OCI runtimes add theirs where their launcher is defined.
LAUNCHERS: dict[str, Callable[[], McpServerLauncher]] = {"process": ProcessLauncher}


def launcher_for_runtime(name: str) -> McpServerLauncher:
    """The launcher for the sandbox runtime named ``name``."""
    try:
        make = LAUNCHERS[name]
    except KeyError:
        raise LauncherUnavailable(f"no MCP server launcher for runtime {name!r}") from None
    return make()
