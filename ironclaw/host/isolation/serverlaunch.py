"""Running one MCP server in its own OCI sandbox, its stdio the JSON-RPC pipes.

``ServerSandboxes.open`` is the server's counterpart of ``OciIsolator.run``, with the
same discipline: the image re-hashed against its pin (by the caller, who picks it),
the spec built and validated (``serverspec``), a leftover container of the same name
removed first, the runtime started behind the launch gate under the child-process
supervisor, and on the way out, however the block ends, the container killed and
deleted, its bundle removed and its cgroups pruned, shielded from cancellation.

The container lives where the agent's do: the same runtime root, bundles directory
and parent cgroup, under a name with the agents' prefix (``ic-mcp-...``). So the
start-up reconciliation (``reconcile``) that proves a killed plane's agents gone finds
its MCP servers too, with no list of its own to keep.

The server's stdin and stdout are pipes (``terminal`` is false): the caller speaks
MCP on them. Its stderr is kept as a bounded tail and logged, escaped and cut, when
the server stops: it is the server's text, and the server is untrusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import certifi
import trio

from ironclaw.runtime import open_child_process

from .cgroups import remove_container_cgroups
from .imagebuild import write_atomic
from .oci import (
    CONTAINER_PREFIX,
    _give_tree,
    _open_for_search,
    _open_gate,
    _require_traversable,
    _write_private,
    cgroup_parent,
)
from .processes import SandboxProcesses, runtime_programs
from .runtimes import OciRuntime
from .serverimage import ServerImage
from .serverrootfs import BOOT_SCRIPT, INTERPRETER, SERVER_CA_FILE, SERVER_EGRESS_DIR
from .serverspec import SERVER_LIMITS, ServerBundleInputs, build_server_spec
from .spec import SandboxLimits, UserMapping

__all__ = ["RELAY_PORT", "ServerLaunch", "ServerPipes", "ServerSandboxes",
           "UnknownCommand", "server_argv", "server_container_id"]

logger = logging.getLogger(__name__)

RELAY_PORT = 3128  # the in-sandbox loopback port of the egress relay
STDERR_TAIL_BYTES = 16 * 1024
STDERR_LOG_CHARS = 2000
GRACE_PERIOD = 2.0


class UnknownCommand(ValueError):
    """The entry's command is neither a console script nor a program of its image."""


@attrs.frozen
class ServerLaunch:
    """One server instance: whose it is, what it runs, which host paths it gets."""

    server: str
    session_id: str
    image: ServerImage
    command: str
    args: tuple[str, ...]
    workdir: Path
    session_workspace: Path | None = None
    egress_socket: Path | None = None  # its directory is bound; it must hold only this


@attrs.frozen
class ServerPipes:
    send: trio.abc.SendStream
    receive: trio.abc.ReceiveStream
    pid: int


def server_container_id(session_id: str, server: str) -> str:
    """One container per (session, server): a second launch removes a leftover first."""
    digest = hashlib.sha256(f"{session_id}\0{server}".encode()).hexdigest()[:24]
    return f"{CONTAINER_PREFIX}mcp-{digest}"


def server_argv(image: ServerImage, command: str, args: tuple[str, ...], *,
                egress_socket_name: str | None) -> tuple[str, ...]:
    """The sandbox's argv: the boot script, which starts the relay when the server has
    egress, then calls the console script or becomes the program."""
    boot = [INTERPRETER, "-I", "-B", BOOT_SCRIPT]
    if egress_socket_name is not None:
        boot += ["--relay", f"{RELAY_PORT}={SERVER_EGRESS_DIR}/{egress_socket_name}"]
    if command in image.console_scripts:
        boot += ["--entry", image.console_scripts[command]]
    elif f"/usr/bin/{command}" in image.programs:
        boot += ["--exec", f"/usr/bin/{command}"]
    else:
        raise UnknownCommand(f"{command!r:.80} is neither a console script nor a program "
                             "of the server's image")
    return (*boot, "--", command, *args)


def server_env(image: ServerImage, *, egress: bool, ca_file: bool) -> tuple[str, ...]:
    env = ["PATH=/usr/bin", "LANG=C.UTF-8", "HOME=/work", "TMPDIR=/tmp", "TZ=UTC"]
    if "/usr/bin/git" in image.programs:
        # The session's workspace belongs to the agent's uid, not necessarily this
        # one's view of it: git's ownership check would refuse every repository.
        env += ["GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory",
                "GIT_CONFIG_VALUE_0=*", "GIT_TERMINAL_PROMPT=0"]
    if egress:
        proxy = f"http://127.0.0.1:{RELAY_PORT}"
        env += [f"{name}={proxy}" for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                                               "https_proxy", "http_proxy")]
    if ca_file:
        env += [f"SSL_CERT_FILE={SERVER_CA_FILE}"]
    return tuple(env)


class ServerSandboxes:
    """Launches MCP servers under one OCI runtime, for one state directory."""

    def __init__(self, runtime: OciRuntime, *, state_dir: Path,
                 limits: SandboxLimits = SERVER_LIMITS, mapping: UserMapping | None = None,
                 ca_bundle: Path | None = None, grace_period: float = GRACE_PERIOD) -> None:
        """``ca_bundle``: extra trust anchors (the egress ``ca_bundle``, for an upstream
        under a private CA). Servers then get the public store (certifi's) plus these,
        as ``SSL_CERT_FILE``: TLS runs end to end through the broker's tunnel, so the
        server itself verifies the upstream."""
        self.runtime = runtime
        self._state_dir = state_dir.resolve()
        self._bundles = state_dir / "runtime" / "bundles"
        self._cgroup_parent = cgroup_parent(state_dir)
        self._programs = runtime_programs([runtime.binary])
        self._limits = limits
        self._mapping = mapping or UserMapping()
        self._ca_bundle = ca_bundle
        self._grace = grace_period

    @asynccontextmanager
    async def open(self, launch: ServerLaunch) -> AsyncIterator[ServerPipes]:
        cid = server_container_id(launch.session_id, launch.server)
        bundle = self._bundles / cid
        gate: int | None = None
        try:
            await trio.to_thread.run_sync(self._prepare, launch, cid, bundle)
            gate_path = bundle / f"{secrets.token_hex(16)}.gate"
            gate = await trio.to_thread.run_sync(_open_gate, gate_path)
            argv = self.runtime.gated_run_argv(bundle, cid, gate_path)
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
            async with open_child_process(argv, env=env, cwd=str(bundle),
                                          grace_period=self._grace, pipe_stdio=True,
                                          stderr_tail_bytes=STDERR_TAIL_BYTES,
                                          check=False) as child:
                assert child.stdin is not None and child.stdout is not None
                try:
                    yield ServerPipes(child.stdin, child.stdout, child.pid)
                finally:
                    _log_stderr(launch, child.stderr_tail)
        finally:
            if gate is not None:
                os.close(gate)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._cleanup, cid, bundle)

    # -- blocking parts, on worker threads -----------------------------------------------

    def _prepare(self, launch: ServerLaunch, cid: str, bundle: Path) -> None:
        self._cleanup(cid, bundle)
        uid = self._mapping.agent_host_uid
        launch.workdir.mkdir(parents=True, exist_ok=True)
        _give_tree(launch.workdir, uid)
        launch.workdir.chmod(0o700)
        egress_dir = None
        if launch.egress_socket is not None:
            # As the agent's socket directory: root's and 0711, the socket the sandbox
            # uid's and 0600, so no other local user can spend the server's egress.
            egress_dir = launch.egress_socket.parent
            egress_dir.chmod(0o711)
            os.chown(launch.egress_socket, uid, uid, follow_symlinks=False)
            launch.egress_socket.chmod(0o600)
        trust = self._trust_file() if self._ca_bundle is not None else None
        own = (self._state_dir,)
        needed = [launch.image.rootfs, launch.workdir,
                  *(p for p in (launch.session_workspace, egress_dir, trust)
                    if p is not None)]
        _open_for_search(needed, own)
        _require_traversable(needed)
        inputs = ServerBundleInputs(
            container_id=cid, rootfs=launch.image.rootfs,
            args=server_argv(launch.image, launch.command, launch.args,
                             egress_socket_name=launch.egress_socket.name
                             if launch.egress_socket is not None else None),
            env=server_env(launch.image, egress=egress_dir is not None,
                           ca_file=trust is not None),
            workdir=launch.workdir, session_workspace=launch.session_workspace,
            egress_dir=egress_dir, ca_file=trust,
            cgroups_path=f"/{self._cgroup_parent}/{cid}", gvisor=self.runtime.gvisor,
            limits=self._limits, mapping=self._mapping)
        config = build_server_spec(inputs)
        bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.runtime.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(bundle / "config.json", json.dumps(config, indent=1).encode(), None)

    def _trust_file(self) -> Path:
        """certifi's public roots and the operator's extra anchors, in one file of the
        state directory (public data, world-readable), rewritten when either changes."""
        assert self._ca_bundle is not None
        data = Path(certifi.where()).read_bytes() + b"\n" + self._ca_bundle.read_bytes()
        path = self._bundles.parent / "mcp-trust.pem"
        if not path.is_file() or path.read_bytes() != data:
            write_atomic(path, data, mode=0o444)
        return path

    def _cleanup(self, cid: str, bundle: Path) -> None:
        """As ``OciIsolator._cleanup``: every process of the container killed and
        outwaited, then the container deleted, its bundle and cgroups removed."""
        SandboxProcesses(self._programs, bundle, cgroup_parent=self._cgroup_parent,
                         container=cid).kill_all()
        self.runtime.remove(cid)
        shutil.rmtree(bundle, ignore_errors=True)
        remove_container_cgroups(self._cgroup_parent, cid)


def _log_stderr(launch: ServerLaunch, tail: bytes) -> None:
    if tail:
        text = tail.decode("utf-8", "replace")[-STDERR_LOG_CHARS:]
        logger.info("MCP server %s (session %s) stderr tail: %r", launch.server,
                    launch.session_id, text)

