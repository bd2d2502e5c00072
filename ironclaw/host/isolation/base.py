"""The isolation boundary, as the session actor sees it.

A session actor launches its agent through an ``Isolator`` and supervises it; it
never knows which runtime is underneath. Runtimes differ in strength and say so:
gVisor (``runsc``) puts a second kernel between agent and host; ``runc``/``crun``
share the host kernel; ``process`` is a bare subprocess for development only.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Protocol

import attrs
import trio

from ironclaw.contract.agent_config import AgentConfig
from ironclaw.contract.layout import QueuePaths

from .hostmounts import HostMount


class Strength(enum.StrEnum):
    GVISOR = "gvisor"  # a user-space kernel between the agent and the host
    SHARED_KERNEL = "shared-kernel"  # namespaces, seccomp, cgroups; the host's kernel
    NONE = "none"  # a plain process: development and tests only


class InsecureRuntimeRefused(RuntimeError):
    """The process runtime was asked for without the explicit flag that allows it."""


class SandboxExited(Exception):
    """The agent's sandbox stopped on its own. ``returncode`` 0 is a clean exit."""

    def __init__(self, returncode: int, stderr_tail: bytes) -> None:
        super().__init__(f"sandbox exited with {returncode}")
        self.returncode = returncode
        self.stderr_tail = stderr_tail


@attrs.frozen
class LaunchSpec:
    """Everything one launch needs, as host paths. The isolator decides how the
    agent sees them (the same paths for ``process``, binds at the contract's fixed
    in-sandbox paths for OCI runtimes)."""

    session_id: str
    agent_group_id: str
    queues: QueuePaths
    key_file: Path
    socket_dir: Path
    workspace: Path
    run_dir: Path  # a host directory private to this session's launches
    config: AgentConfig  # paths inside it are rewritten by the isolator
    # The agent group's granted host mounts (the ``mounts`` change kind), read from
    # its grant at every launch: a revoked mount is gone from the next one.
    mounts: tuple[HostMount, ...] = ()


class Isolator(Protocol):
    name: str
    strength: Strength

    async def prepare_host(self, spec: LaunchSpec) -> None:
        """Host-side set-up the session's directories need before the host first
        reads or watches them (the OCI isolator mounts the session's capped disk
        volumes here). Idempotent."""
        ...

    async def release_session(self, session_dir: Path, workspace: Path | None) -> None:
        """Undo :meth:`prepare_host` for a deleted session, whose sandbox has stopped:
        afterwards ``session_dir`` (and ``workspace``, when given) hold nothing the
        isolator mounted, so the caller can remove them. Idempotent."""
        ...

    async def run(self, spec: LaunchSpec, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Launch, report the pid through ``task_status``, and wait. Raise
        ``SandboxExited`` when the sandbox stops on its own; on cancellation stop it
        (terminate, then kill) and clean up everything the launch created."""
        ...
