"""The daemon's command line: clear refusals, and a clean shutdown on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from ironclaw.cli import build_sandbox, controlplane
from ironclaw.cli.controlplane import main
from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import MessageKind, SessionMode
from ironclaw.contract.ids import new_message_id
from ironclaw.contract.queue import OutboundReader, QueueBusy, QueueNotReady
from ironclaw.contract.rows import NewInboundMessage
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.keys import FileMasterKeySource, KeyStore
from ironclaw.host.modelproxy import Credentials


def test_an_absent_runtime_is_refused_clearly(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no runtime on this PATH
    assert main(["--dev", "--no-chat", "--no-api", "--runtime", "runc",
                 "--state-dir", str(tmp_path / "s")]) == 2
    assert "'runc' is not installed" in capsys.readouterr().err


def test_the_process_runtime_needs_dev_or_an_explicit_flag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runtime", "process", "--no-api", "--state-dir", str(tmp_path / "s")]) == 1
    assert "no isolation" in capsys.readouterr().err


def _replies_reader(state: Path, session_id: str) -> Callable[[], list[str]]:
    """What the session's agent has answered so far (none while its file is not ready)."""
    keys = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    secret = SessionKeys.from_secret(keys.get_session(session_id))
    reader = OutboundReader(state / "sessions" / session_id / "outbound" / "outbound.db",
                            secret.outbound)

    def replies() -> list[str]:
        try:
            return [m.content for m in reader.poll().messages]
        except (QueueNotReady, QueueBusy):
            return []

    return replies


def _agents(under: Path) -> set[int]:
    """Agents whose config lives under ``under``: other planes on the machine (other
    tests) are not ours to count."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if b"sandbox_agent" in cmdline and str(under).encode() in cmdline:
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


async def _leave_unanswered_message(state: Path, keys: Path) -> str:
    """Queue a message for the demo session without waking it, as if the plane had
    died right after accepting it: the daemon's recovery must pick it up."""
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(ControlPlaneConfig(
            state_dir=state, dev=True, runtime="process", key_dir=keys),
            credentials=Credentials()).run)
        group = await plane.registry.find_messaging_group("local", DEMO_CONVERSATION)
        assert group is not None
        session = await plane.registry.resolve_session("demo", group.id, None,
                                                       SessionMode.SHARED)
        await plane.sessions._deps.queues.enqueue(session.id, [NewInboundMessage(
            id=new_message_id("in"), kind=MessageKind.CHAT, content="left behind")])
        nursery.cancel_scope.cancel()
    return session.id


@pytest.mark.slow
def test_sigterm_shuts_down_cleanly_with_no_orphans(tmp_path: Path) -> None:
    """The real daemon recovers a pending message (so an agent is live), then SIGTERM
    stops everything: exit code 0, no agent process left, the answer delivered."""
    state = tmp_path / "state"
    session_id = trio.run(_leave_unanswered_message, state, tmp_path / "keys")
    before = _agents(state)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ironclaw.cli.controlplane", "--dev", "--no-chat",
         "--runtime", "process",
         "--state-dir", str(state), "--log-level", "DEBUG", "--api-addr", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True)
    assert daemon.stderr is not None
    pid_file = state / "sessions" / session_id / "run" / "agent.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "recovery never launched the agent"
    agent = int(pid_file.read_text())
    replies_now = _replies_reader(state, session_id)
    deadline = time.monotonic() + 60
    while not replies_now() and time.monotonic() < deadline:
        time.sleep(0.05)  # let it answer: the point is a clean stop of a working plane
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    log = daemon.stderr.read()
    daemon.stderr.close()
    assert not Path(f"/proc/{agent}").exists() or b") Z " in Path(
        f"/proc/{agent}/stat").read_bytes()
    assert _agents(state) <= before
    assert "Traceback" not in log
    # Recovery answered the message the first plane left behind.
    assert replies_now() == ["echo: left behind"]


def test_a_public_api_bind_needs_its_flag(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dev", "--no-chat", "--api-addr", "0.0.0.0:8787",
                 "--state-dir", str(tmp_path / "s")]) == 2
    assert "api-addr" in capsys.readouterr().err


# docs/operations.md's synopses are the parsers' own usage lines.

def _synopsis(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=90)
    lines = parser.format_usage().removeprefix("usage: ").rstrip("\n").splitlines()
    return "\n".join([lines[0], *(line[len("usage: "):] for line in lines[1:])])


@pytest.mark.parametrize("parser", [controlplane.build_parser, build_sandbox.build_parser],
                         ids=["daemon", "build-sandbox"])
def test_the_synopsis_in_operations_md_is_the_parsers_usage(
        parser: Callable[[], argparse.ArgumentParser]) -> None:
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert f"```\n{_synopsis(parser())}\n```" in operations
