"""Child processes, for real: bounded tails, TERM-then-KILL, no zombies, no orphans.

These use real subprocesses and real time (a virtual clock cannot wait for a process), so
grace periods are kept short and every test is bounded by ``fail_after``.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from ironclaw.runtime import (
    BackoffPolicy,
    ChildFailed,
    ChildParked,
    ChildProcess,
    Event,
    ProcessFailed,
    Supervisor,
    open_child_process,
    run_child_process,
)

TEST_DEADLINE = 15


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


class StdoutLines:
    """An ``on_stdout`` callback that lets the test wait for a line."""

    def __init__(self) -> None:
        self.data = b""
        self._changed = trio.Event()

    def __call__(self, chunk: bytes) -> None:
        self.data += chunk
        self._changed.set()
        self._changed = trio.Event()

    async def line_starting(self, prefix: str) -> str:
        while True:
            for line in self.data.decode().splitlines(keepends=True):
                if line.startswith(prefix) and line.endswith("\n"):
                    return line[len(prefix) :].strip()
            await self._changed.wait()


def reaped(pid: int) -> bool:
    """Our own child: once reaped, the pid must be entirely gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def not_running(pid: int) -> bool:
    """Someone else's child: gone, or a zombie waiting for an init that may never reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    state = stat[stat.rindex(b")") + 2 :].split()[0]
    return state in (b"Z", b"X")


SPAWN_GRANDCHILD = textwrap.dedent("""
    import signal, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    print("grandchild pid", grandchild.pid, flush=True)
""")


async def test_stderr_tail_is_bounded_and_holds_the_last_bytes() -> None:
    # 1 MiB is far more than a pipe holds: without continuous draining the child would
    # block on write forever and wait() would never return.
    size = 1024 * 1024
    code = f"""
        import sys
        data = bytes(i % 251 for i in range({size}))
        sys.stderr.buffer.write(data)
        sys.stdout.buffer.write(data[::-1])
    """
    expected = bytes(i % 251 for i in range(size))
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(
            python(code), stderr_tail_bytes=4096, stdout_tail_bytes=100
        ) as child:
            assert child.returncode is None or child.returncode == 0
            assert await child.wait() == 0

    assert child.stderr_tail == expected[-4096:]
    assert child.stdout_tail == expected[::-1][-100:]
    assert reaped(child.pid)


async def test_nonzero_exit_raises_with_exit_code_and_stderr_tail() -> None:
    code = """
        import sys
        sys.stderr.write("loading config\\nconfig file missing\\n")
        sys.exit(3)
    """
    with trio.fail_after(TEST_DEADLINE), pytest.raises(ProcessFailed) as caught:
        async with open_child_process(python(code)) as child:
            await child.wait()

    assert caught.value.returncode == 3
    assert caught.value.stderr_tail == b"loading config\nconfig file missing\n"
    assert "exit code 3" in str(caught.value)
    assert "config file missing" in str(caught.value)


async def test_nonzero_exit_is_reported_without_raising_when_check_is_off() -> None:
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(python("import os; os.abort()"), check=False) as child:
            await child.wait()
    assert child.returncode == -signal.SIGABRT
    assert child.failed


async def test_leaving_the_block_terminates_a_cooperative_child_without_error() -> None:
    lines = StdoutLines()
    code = """
        import time
        print("ready", flush=True)
        time.sleep(60)
    """
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(python(code), on_stdout=lines) as child:
            await lines.line_starting("ready")
            assert child.returncode is None

    # We asked it to stop, so its death by SIGTERM is not a ProcessFailed.
    assert child.returncode == -signal.SIGTERM
    assert child.stopped_by_parent and not child.failed
    assert reaped(child.pid)


async def test_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    lines = StdoutLines()
    code = """
        import signal, sys, time
        def refuse(signum, frame):
            sys.stderr.write("TERM received, ignoring\\n")
            sys.stderr.flush()
        signal.signal(signal.SIGTERM, refuse)
        print("ready", flush=True)
        while True:
            time.sleep(60)
    """
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(python(code), grace_period=0.5, on_stdout=lines) as child:
            await lines.line_starting("ready")

    assert b"TERM received, ignoring" in child.stderr_tail  # asked politely first
    assert child.returncode == -signal.SIGKILL  # then insisted
    assert reaped(child.pid)


async def test_cancellation_leaves_neither_child_nor_grandchild_behind() -> None:
    lines = StdoutLines()
    code = SPAWN_GRANDCHILD + "time.sleep(60)\n"
    grandchild_code = "import time; print('grandchild up', flush=True); time.sleep(60)"
    with trio.fail_after(TEST_DEADLINE), trio.CancelScope() as scope:
        async with open_child_process(
            [*python(code), grandchild_code], grace_period=0.5, on_stdout=lines
        ) as child:
            grandchild = int(await lines.line_starting("grandchild pid "))
            await lines.line_starting("grandchild up")
            assert not not_running(grandchild)
            scope.cancel()
            await trio.sleep_forever()

    assert scope.cancelled_caught
    assert reaped(child.pid)
    assert not_running(grandchild)


async def test_grandchild_ignoring_sigterm_is_killed_with_the_group() -> None:
    lines = StdoutLines()
    code = SPAWN_GRANDCHILD + "time.sleep(60)\n"
    stubborn = textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("grandchild up", flush=True)
        time.sleep(60)
    """)
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(
            [*python(code), stubborn], grace_period=0.5, on_stdout=lines
        ) as child:
            grandchild = int(await lines.line_starting("grandchild pid "))
            await lines.line_starting("grandchild up")

    assert child.returncode == -signal.SIGTERM
    assert not_running(grandchild)


async def test_grandchild_left_behind_by_an_exiting_child_is_swept() -> None:
    lines = StdoutLines()
    # The child exits at once, leaving a grandchild that still holds its pipes open.
    code = SPAWN_GRANDCHILD
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(
            [*python(code), "import time; time.sleep(60)"], grace_period=0.5, on_stdout=lines
        ) as child:
            assert await child.wait() == 0
            grandchild = int(await lines.line_starting("grandchild pid "))

    assert not child.failed
    assert not_running(grandchild)


async def test_an_error_in_the_block_propagates_as_itself_and_still_cleans_up() -> None:
    with trio.fail_after(TEST_DEADLINE), pytest.raises(KeyError):
        async with open_child_process(python("import time; time.sleep(60)")) as child:
            raise KeyError("caller bug")
    assert child.stopped_by_parent
    assert reaped(child.pid)


async def test_child_environment_is_empty_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONCLAW_TEST_SECRET", "hunter2")
    code = "import os; print(os.environ.get('IRONCLAW_TEST_SECRET'), os.environ.get('GIVEN'))"
    with trio.fail_after(TEST_DEADLINE):
        async with open_child_process(python(code)) as inherited_nothing:
            await inherited_nothing.wait()
        async with open_child_process(python(code), env={"GIVEN": "yes"}) as given:
            await given.wait()
    assert inherited_nothing.stdout_tail == b"None None\n"
    assert given.stdout_tail == b"None yes\n"


async def test_run_child_process_starts_in_a_nursery_and_is_cancelled_cleanly() -> None:
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            child: ChildProcess = await nursery.start(
                functools.partial(run_child_process, python("import time; time.sleep(60)"))
            )
            assert child.returncode is None
            nursery.cancel_scope.cancel()
    assert reaped(child.pid)


async def test_supervised_crashing_process_is_restarted_then_parked() -> None:
    events: list[Event] = []
    parked = trio.Event()

    class Sink:
        def publish(self, event: Event) -> None:
            events.append(event)
            if isinstance(event, ChildParked):
                parked.set()

    crashing = functools.partial(
        run_child_process, python("import sys; sys.exit('sandbox exploded')")
    )
    policy = BackoffPolicy(initial=0.01, max_failures=3)
    supervisor = Supervisor("sandbox", crashing, policy=policy, events=Sink())
    with trio.fail_after(TEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await parked.wait()
            nursery.cancel_scope.cancel()

    failures = [event for event in events if isinstance(event, ChildFailed)]
    assert len(failures) == 3
    assert all("ProcessFailed" in failure.error for failure in failures)
    assert all("sandbox exploded" in failure.error for failure in failures)


async def test_pipe_stdio_hands_the_caller_the_child_s_stdin_and_stdout() -> None:
    async with open_child_process(["cat"], pipe_stdio=True, grace_period=1.0) as child:
        assert child.stdin is not None and child.stdout is not None
        await child.stdin.send_all(b"ping\n")
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"\n"):
                received += await child.stdout.receive_some(64)
        assert received == b"ping\n"
        assert child.stdout_tail == b""  # not drained behind the caller's back


async def test_pipe_stdio_and_on_stdout_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="exclude"):
        async with open_child_process(["true"], pipe_stdio=True, on_stdout=print):
            pass
