"""Run a child process so that it can neither wedge us nor outlive us.

``open_child_process`` starts the child in a session (and so a process group) of its own,
drains its stdout and stderr continuously into bounded tail buffers (a chatty child never
blocks on a full pipe, and a runaway one never eats our memory), and when the block ends,
for whatever reason, tears the whole group down: SIGTERM, a grace period, SIGKILL, and
always a reap. Teardown is shielded, so a cancellation cannot leave a zombie or an orphan
behind. When the child's leader exits on its own, its left-over group members get the
same treatment straight away.

The child gets an empty environment unless one is passed: the control plane's environment
holds secrets, and a sandbox should receive only what it is explicitly handed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import trio

from ironclaw.runtime._process_group import signal_group, wait_until_group_gone

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_TAIL_BYTES",
    "ChildProcess",
    "ProcessFailed",
    "TailBuffer",
    "open_child_process",
    "run_child_process",
]

DEFAULT_GRACE_PERIOD = 5.0
DEFAULT_TAIL_BYTES = 64 * 1024
# Once every process is gone, how long the pipe drains may take to read what is left.
_PIPE_LINGER = 1.0
# How long SIGKILLed group members may take to disappear before we stop waiting.
_KILL_SETTLE = 2.0
_ERROR_TAIL_CHARS = 2000


class TailBuffer:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._limit = limit
        self._data = bytearray()
        self.total_bytes = 0

    def append(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        self._data += chunk
        excess = len(self._data) - self._limit
        if excess > 0:
            del self._data[:excess]

    def getvalue(self) -> bytes:
        return bytes(self._data)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class ProcessFailed(Exception):
    """The child exited non-zero (or died of a signal) without being asked to stop."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr_tail: bytes) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        tail = stderr_tail.decode("utf-8", errors="replace")[-_ERROR_TAIL_CHARS:].strip()
        message = f"{self.argv[0]} failed with {_describe_exit(returncode)}"
        super().__init__(f"{message}; stderr tail:\n{tail}" if tail else message)


class ChildProcess:
    """A running child; obtained from :func:`open_child_process`."""

    def __init__(
        self,
        process: trio.Process,
        argv: tuple[str, ...],
        grace_period: float,
        stderr_tail_bytes: int,
        stdout_tail_bytes: int,
    ) -> None:
        self._process = process
        self.argv = argv
        self._grace_period = grace_period
        self._stderr = TailBuffer(stderr_tail_bytes)
        self._stdout = TailBuffer(stdout_tail_bytes)
        self._stop_started = False
        self._stopped = trio.Event()
        self._stopped_by_parent = False
        self._stdout_piped = False

    @property
    def pid(self) -> int:
        """Also the process group id: the child leads its own group."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while running; negative for death by signal."""
        return self._process.returncode

    @property
    def stderr_tail(self) -> bytes:
        return self._stderr.getvalue()

    @property
    def stdout_tail(self) -> bytes:
        """Empty when stdout goes to an ``on_stdout`` callback instead."""
        return self._stdout.getvalue()

    @property
    def stdin(self) -> trio.abc.SendStream | None:
        """The child's stdin; only with ``pipe_stdio``."""
        return self._process.stdin

    @property
    def stdout(self) -> trio.abc.ReceiveStream | None:
        """The child's stdout, for the caller to read; only with ``pipe_stdio``."""
        return self._process.stdout if self._stdout_piped else None

    @property
    def stopped_by_parent(self) -> bool:
        """True if we signalled the child while it was still running."""
        return self._stopped_by_parent

    @property
    def failed(self) -> bool:
        """Exited non-zero of its own accord (not because we stopped it)."""
        code = self.returncode
        return code is not None and code != 0 and not self._stopped_by_parent

    async def wait(self) -> int:
        """Wait for the child (the group leader) to exit; return its return code."""
        return await self._process.wait()

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to every process in the child's group."""
        signal_group(self.pid, signum)

    async def _drain(
        self, stream: trio.abc.ReceiveStream | None, consume: Callable[[bytes], object]
    ) -> None:
        if stream is None:
            return
        try:
            async for chunk in stream:
                consume(bytes(chunk))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _sweep_group_after_leader_exits(self) -> None:
        await self._process.wait()
        with trio.CancelScope(shield=True):
            await self._stop()

    async def _stop(self) -> None:
        """Terminate the whole group and reap the leader. Idempotent; callers shield."""
        if self._stop_started:
            await self._stopped.wait()
            return
        self._stop_started = True
        try:
            if self._process.returncode is None:
                self._stopped_by_parent = True
            deadline = trio.current_time() + self._grace_period
            signal_group(self.pid, signal.SIGTERM)
            with trio.move_on_at(deadline):
                await self._process.wait()
                await wait_until_group_gone(self.pid)
            signal_group(self.pid, signal.SIGKILL)
            await self._process.wait()
            with trio.move_on_after(_KILL_SETTLE):
                await wait_until_group_gone(self.pid)
        finally:
            self._stopped.set()


@asynccontextmanager
async def open_child_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    stderr_tail_bytes: int = DEFAULT_TAIL_BYTES,
    stdout_tail_bytes: int = DEFAULT_TAIL_BYTES,
    on_stdout: Callable[[bytes], object] | None = None,
    pipe_stdio: bool = False,
    check: bool = True,
) -> AsyncIterator[ChildProcess]:
    """Run ``argv`` for the duration of the block.

    Leaving the block stops the child's whole process group (SIGTERM, then SIGKILL after
    ``grace_period`` seconds) and reaps it. If the child had already exited non-zero on
    its own and the block ended normally, :class:`ProcessFailed` is raised (unless
    ``check`` is false). ``on_stdout``, if given, receives each stdout chunk instead of the
    stdout tail buffer; it runs on the Trio thread and must not block. With
    ``pipe_stdio`` the child's stdin and stdout are pipes the caller reads and writes
    (``child.stdin``, ``child.stdout``), for a child that speaks a protocol on them;
    stdout is then not drained here.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    if grace_period < 0:
        raise ValueError("grace_period must be >= 0")
    if stderr_tail_bytes < 0 or stdout_tail_bytes < 0:
        raise ValueError("tail sizes must be >= 0")
    if pipe_stdio and on_stdout is not None:
        raise ValueError("on_stdout and pipe_stdio exclude each other")
    argv = tuple(argv)
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.PIPE if pipe_stdio else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=dict(env) if env is not None else {},
        cwd=cwd,
    )
    child = ChildProcess(process, argv, grace_period, stderr_tail_bytes, stdout_tail_bytes)
    child._stdout_piped = pipe_stdio
    sole_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child._drain, process.stderr, child._stderr.append)
            if not pipe_stdio:
                nursery.start_soon(child._drain, process.stdout,
                                   on_stdout or child._stdout.append)
            nursery.start_soon(child._sweep_group_after_leader_exits)
            try:
                yield child
            finally:
                with trio.CancelScope(shield=True):
                    await child._stop()
                linger_until = trio.current_time() + _PIPE_LINGER
                nursery.cancel_scope.deadline = min(nursery.cancel_scope.deadline, linger_until)
    except BaseExceptionGroup as group:
        # The background tasks swallow their expected errors, so a single exception here is
        # the block's own (or on_stdout's); hand it back as itself, not wrapped in a group.
        if len(group.exceptions) != 1:
            raise
        sole_error = group.exceptions[0]
    finally:
        with trio.CancelScope(shield=True):
            await child._stop()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
    if sole_error is not None:
        raise sole_error
    returncode = child.returncode
    if check and child.failed and returncode is not None:
        raise ProcessFailed(argv, returncode, child.stderr_tail)


async def run_child_process(
    argv: Sequence[str],
    *,
    task_status: trio.TaskStatus[ChildProcess] = trio.TASK_STATUS_IGNORED,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    stderr_tail_bytes: int = DEFAULT_TAIL_BYTES,
    stdout_tail_bytes: int = DEFAULT_TAIL_BYTES,
    on_stdout: Callable[[bytes], object] | None = None,
    check: bool = True,
) -> int:
    """Run ``argv`` until it exits; ``await nursery.start(...)`` returns the ChildProcess.

    Returns the exit code; raises :class:`ProcessFailed` on a non-zero one (with
    ``check``). Cancellation stops and reaps the process group. Shaped to be a
    :class:`~ironclaw.runtime.supervisor.Supervisor` child via ``functools.partial``.
    """
    async with open_child_process(
        argv,
        env=env,
        cwd=cwd,
        grace_period=grace_period,
        stderr_tail_bytes=stderr_tail_bytes,
        stdout_tail_bytes=stdout_tail_bytes,
        on_stdout=on_stdout,
        check=check,
    ) as child:
        task_status.started(child)
        returncode = await child.wait()
    return returncode
