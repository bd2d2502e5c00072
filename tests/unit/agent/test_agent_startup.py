"""Start-up input: the config file and the key file, and nothing else."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sandbox_agent.__main__ import main
from sandbox_agent.startup import (
    NeverClaimed,
    StartupError,
    await_claim,
    load_config,
    load_keys,
)
from tests.support.agent import HostSide


def test_the_host_written_config_loads(host: HostSide) -> None:
    assert load_config(host.write_config()) == host.config
    assert load_keys(host.config.key_file) == host.keys


@pytest.mark.parametrize(("change", "message"), [
    ({"provider": {"api": "smoke-signals", "host": "h.test", "model": "m"}}, "bad agent"),
    ({"provider": {"api": "openai-chat", "host": "h.test/../x", "model": "m"}}, "host"),
    ({"provider": {"api": "openai-chat", "host": "h.test", "model": "m",
                   "max_tokens": 0}}, "max_tokens"),
    ({"limits": {"history_max_messages": 0}}, "history"),
    ({"safety_poll_interval_s": 0}, "interval"),
    ({"session_id": "../../etc"}, "bad agent"),
    ({"surprise": 1}, "bad agent"),
])
def test_bad_configs_are_refused_with_a_reason(host: HostSide, change: dict[str, object],
                                               message: str) -> None:
    raw = json.loads(host.config.render())
    raw.update(change)
    path = host.root / "agent.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(StartupError, match=message):
        load_config(path)


def test_oversized_files_are_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (600 * 1024))
    with pytest.raises(StartupError, match="larger than"):
        load_config(big)


def test_key_file_problems_never_echo_material(tmp_path: Path) -> None:
    secret = "cd" * 32
    path = tmp_path / "session.key"
    for text in (f"inbound={secret}\n", f"inbound={secret}\noutbound={secret[:-2]}XY\n",
                 f"inbound={secret}\noutbound={secret}\nextra={secret}\n"):
        path.write_text(text)
        with pytest.raises(StartupError) as caught:
            load_keys(path)
        assert secret[:16] not in str(caught.value)


def test_no_secret_is_taken_from_the_environment(host: HostSide,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # A key in the environment must not rescue a missing key file.
    monkeypatch.setenv("IRONCLAW_SESSION_KEY", host.keys.render_file())
    host.config.key_file.unlink()
    assert main(["--config", str(host.write_config())]) == 2
    assert "cannot read key file" in capsys.readouterr().err


def test_unexpected_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--config", "/x", "--key", "abc"])
    assert caught.value.code == 2


def test_the_agent_loads_nothing_of_ironclaw_but_the_contract() -> None:
    code = ("import sys, sandbox_agent.__main__, sandbox_agent.agent; "
            "print(sorted(m for m in sys.modules if m.startswith('ironclaw.') "
            "and not m.startswith('ironclaw.contract')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[3]).stdout.strip()
    assert out == "[]"


def _claim_socket(path: Path, word: bytes | None) -> threading.Thread:
    """A host end of ``claim.sock`` that answers the agent with ``word`` (None: hangs
    up without a claim)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                if word is not None:
                    conn.sendall(word)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_a_warm_agent_goes_on_only_when_claimed(tmp_path: Path) -> None:
    path = tmp_path / "claim.sock"
    thread = _claim_socket(path, b"go\n")
    await_claim(path)
    thread.join(5)


def test_a_warm_agent_released_unclaimed_or_told_otherwise_stops(tmp_path: Path) -> None:
    released = tmp_path / "released.sock"
    thread = _claim_socket(released, None)
    with pytest.raises(NeverClaimed):
        await_claim(released)
    thread.join(5)
    odd = tmp_path / "odd.sock"
    thread = _claim_socket(odd, b"no!")
    with pytest.raises(StartupError, match="other than go"):
        await_claim(odd)
    thread.join(5)
    with pytest.raises(StartupError, match="cannot reach"):
        await_claim(tmp_path / "absent.sock")
