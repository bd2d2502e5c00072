"""The ``process`` runtime: the agent as a bare subprocess. No isolation at all.

It exists so that development and tests run on any machine, with the same file
layout, key file and sockets as a real sandbox. It refuses to exist unless the
caller says explicitly that it is allowed (``--dev`` or an insecure flag), and it
says loudly what it is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from ironclaw.runtime import ProcessFailed, open_child_process

from .base import InsecureRuntimeRefused, LaunchSpec, SandboxExited, Strength
from .hostmounts import MountRefused

logger = logging.getLogger(__name__)

WARNING = ("runtime 'process' gives the agent NO isolation: it runs as a plain process "
           "with the control plane's user, filesystem and network. Development only.")


class ProcessIsolator:
    name = "process"
    strength = Strength.NONE

    def __init__(self, *, allow_insecure: bool, grace_period: float = 3.0) -> None:
        if not allow_insecure:
            raise InsecureRuntimeRefused(
                "the process runtime has no isolation; it needs --dev or "
                "--allow-insecure-runtime")
        self._grace = grace_period
        logger.warning(WARNING)

    async def prepare_host(self, spec: LaunchSpec) -> None:
        """Nothing: a bare process writes the host's own directories, uncapped."""

    async def release_session(self, session_dir: Path, workspace: Path | None) -> None:
        """Nothing: :meth:`prepare_host` mounted nothing."""

    async def run(self, spec: LaunchSpec, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        if spec.mounts:
            # A bare process has no mount namespace to bind into; handing it the host
            # paths instead would pretend a confinement ("read-only") it cannot give.
            raise MountRefused("the process runtime cannot bind host mounts; the agent "
                               "group has some granted: run it under runsc, runc or crun")
        # A unix socket path must fit in ~100 bytes and a state directory may not: the
        # agent gets a short symlink to its socket directory (an OCI runtime binds it
        # at the contract's short /run/ironclaw/sock instead).
        short = Path(tempfile.mkdtemp(prefix="ironclaw-sock-"))
        try:
            (short / "s").symlink_to(spec.socket_dir, target_is_directory=True)
            await self._run(spec, short / "s", task_status)
        finally:
            shutil.rmtree(short, ignore_errors=True)

    async def _run(self, spec: LaunchSpec, socket_dir: Path,
                   task_status: trio.TaskStatus[int]) -> None:
        config = attrs.evolve(
            spec.config, inbound_dir=spec.queues.inbound_dir,
            outbound_dir=spec.queues.outbound_dir, key_file=spec.key_file,
            socket_dir=socket_dir, workspace=spec.workspace,
            scratch_dir=spec.run_dir / "tmp")
        (spec.run_dir / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
        config_path = spec.run_dir / "agent.json"
        tmp = config_path.with_suffix(".tmp")
        tmp.write_text(config.render())
        tmp.chmod(0o600)
        tmp.replace(config_path)
        # An empty environment: no provider key or token of the host's leaks in.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [sys.executable, "-I", "-c", _RUN_AGENT, str(_agent_source_root()),
                "sandbox_agent", "--config", str(config_path)]
        pid_file = spec.run_dir / "agent.pid"
        await trio.to_thread.run_sync(reap_stale_agent, pid_file, config_path)
        try:
            async with open_child_process(argv, env=env, cwd=str(spec.workspace),
                                          grace_period=self._grace) as child:
                pid_file.write_text(f"{child.pid}\n")
                task_status.started(child.pid)
                await child.wait()
        except ProcessFailed as exc:
            raise SandboxExited(exc.returncode, exc.stderr_tail) from None
        finally:
            pid_file.unlink(missing_ok=True)
        raise SandboxExited(0, b"")


# ``-I`` keeps the environment and the working directory (the agent's workspace) off
# the import path; the agent is then imported from the tree the host runs from, not
# from whatever an installed package points at (a second checkout, an older build).
_RUN_AGENT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv.pop(1); "
              "runpy.run_module('sandbox_agent', run_name='__main__', alter_sys=True)")


def _agent_source_root() -> Path:
    spec = importlib.util.find_spec("sandbox_agent")
    if spec is None or spec.origin is None:
        raise RuntimeError("the sandbox_agent package is not importable")
    return Path(spec.origin).resolve().parent.parent


def reap_stale_agent(pid_file: Path, config_path: Path) -> bool:
    """Kill an agent left running by a control plane that died without cleaning up
    (kill -9), before a second one could write the same outbound queue. A process is
    trusted to be that agent only if its command line runs ``sandbox_agent`` with this
    very config file. Every process is looked at, not only the pid file's: a control
    plane can die between spawning the agent and writing its pid."""
    needle = str(config_path).encode()
    reaped = _reap_agents(lambda config: config == needle)
    pid_file.unlink(missing_ok=True)
    return reaped


def reap_stale_agents(state_dir: Path) -> bool:
    """At start, before any session runs: kill every agent a killed control plane of
    this state directory left running, not only those whose sessions get work again
    (an idle session's orphan would otherwise live on until its next wake)."""
    sessions = str(state_dir.resolve() / "sessions").encode() + b"/"
    return _reap_agents(lambda config: config.startswith(sessions))


def _reap_agents(wanted: Callable[[bytes], bool]) -> bool:
    """Kill each agent process whose ``--config`` argument ``wanted`` accepts."""
    candidates = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    reaped = False
    for pid in sorted(candidates):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sandbox_agent" not in cmdline or b"--config" not in cmdline[:-1] \
                or pid == os.getpid():
            continue
        if not wanted(cmdline[cmdline.index(b"--config") + 1]):
            continue
        logger.warning("killing agent pid %s left over from an earlier control plane", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the agent leads its own process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        reaped = True
    return reaped


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if ") Z " in stat:
            return  # a zombie only waits for a reaper that is not us
        time.sleep(0.01)
