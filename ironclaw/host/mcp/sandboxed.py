"""The OCI launcher: each MCP server instance in its own runsc, runc or crun sandbox.

The :class:`~ironclaw.host.mcp.launch.McpServerLauncher` the OCI runtimes use. For one
catalogue entry and one place it re-hashes the entry's pinned image
(``isolation.serverimage``; a rootfs changed since it was pinned stops the launch)
and runs the server in a sandbox of its own (``isolation.serverlaunch``): its own
writable workspace, the session's workspace read-only when the entry asks for it, no
network but the loopback relay to its egress socket when the entry has egress (the
egress broker's CONNECT mode serves that socket for the instance's life, under the
entry's hosts that the group was granted), and the agent's hardening for everything
else. Leaving the block stops the sandbox and removes
every trace of it.

Images are built ahead of launches: ``ensure_images`` (the plane at start, or
``ironclaw-controlplane build-mcp-images``) builds and pins what is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

import trio

from ironclaw.host.isolation.serverimage import (
    ServerImage,
    ServerRecipe,
    ensure_server_image,
    verified_server_image,
)
from ironclaw.host.isolation.serverlaunch import ServerLaunch, ServerSandboxes

from .launch import McpServerEntry, ServerPlace, StdioPipes

__all__ = ["OciLauncher", "ServerTunnels", "ensure_images", "recipe_for"]


def recipe_for(entry: McpServerEntry) -> ServerRecipe:
    """The image recipe of ``entry`` (its ``image`` table); ValueError when malformed."""
    return ServerRecipe.from_table(entry.name, entry.image)


class ServerTunnels(Protocol):
    """The egress broker's CONNECT mode (``ConnectProxy`` in ``host.egress.connect``),
    as the launcher needs it: serve a server instance's socket for a block."""

    def open_tunnel(self, *, session_id: str, group: str, server: str, socket_path: Path,
                    hosts: tuple[str, ...]) -> AbstractAsyncContextManager[Path]: ...


class OciLauncher:
    def __init__(self, sandboxes: ServerSandboxes, *, state_dir: Path,
                 tunnels: ServerTunnels | None = None) -> None:
        """``tunnels``: None when the plane runs no egress broker; a server then gets
        no egress socket, whatever its entry names."""
        self._sandboxes = sandboxes
        self._state_dir = state_dir
        self._tunnels = tunnels

    def open_server(self, entry: McpServerEntry, place: ServerPlace
                    ) -> AbstractAsyncContextManager[StdioPipes]:
        return self._open(entry, place)

    @asynccontextmanager
    async def _open(self, entry: McpServerEntry, place: ServerPlace
                    ) -> AsyncIterator[StdioPipes]:
        image = await trio.to_thread.run_sync(verified_server_image, self._state_dir,
                                              entry.name)
        async with contextlib.AsyncExitStack() as stack:
            egress = None
            if entry.egress and self._tunnels is not None:
                # The CONNECT socket sits alone in a directory of the host's beside the
                # workspace (never inside it: the server writes there), bound read-only.
                socket = place.egress_socket or (place.workdir.parent / f"{entry.name}.egress"
                                                 / "proxy.sock")
                await trio.to_thread.run_sync(
                    lambda: socket.parent.mkdir(mode=0o711, parents=True, exist_ok=True))
                egress = await stack.enter_async_context(self._tunnels.open_tunnel(
                    session_id=place.session_id, group=place.group, server=entry.name,
                    socket_path=socket, hosts=entry.egress))
            launch = ServerLaunch(
                server=entry.name, session_id=place.session_id, image=image,
                command=entry.command, args=entry.args, workdir=place.workdir,
                session_workspace=place.session_workspace if entry.session_workspace
                else None, egress_socket=egress)
            pipes = await stack.enter_async_context(self._sandboxes.open(launch))
            yield StdioPipes(send=pipes.send, receive=pipes.receive)


def ensure_images(state_dir: Path, entries: Iterable[McpServerEntry], *,
                  cache_dir: Path | None = None, force: bool = False,
                  progress: Callable[[str], None] | None = None) -> list[ServerImage]:
    """Build and pin the image of every entry that lacks one (blocking)."""
    return [ensure_server_image(state_dir, recipe_for(entry), cache_dir=cache_dir,
                                force=force, progress=progress) for entry in entries]
