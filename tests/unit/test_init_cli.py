"""``ironclaw-controlplane init``: a production state directory is made, made once, or
refused with a message that says what to change; the daemon then runs it in
production mode (no demo agent) and can log JSON lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ironclaw.cli.controlplane import main
from ironclaw.cli.daemon_settings import JsonLineFormatter
from ironclaw.host.isolation.image import SandboxImage

ROOT = Path(__file__).resolve().parents[2]
INSECURE = ["--runtime", "process", "--allow-insecure-runtime"]


def _private(tmp_path: Path) -> Path:
    base = tmp_path / "private"
    base.mkdir(mode=0o700)
    return base


def test_init_makes_keys_store_audit_and_a_private_token_file_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _private(tmp_path) / "state"
    assert main(["init", "--state-dir", str(state), *INSECURE]) == 0
    out = capsys.readouterr().out
    token_file = state / "owner.token"
    token = token_file.read_text().strip()
    assert token.startswith("icw_") and token not in out  # only in the file
    for path, mode in ((state, 0o700), (token_file, 0o600),
                       (state / "keys" / "master.key", 0o600),
                       (state / "keys" / "sealed-keys.json", 0o600),
                       (state / "host.db", 0o600), (state / "audit" / "audit.log", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    master = (state / "keys" / "master.key").read_bytes()
    # Again: nothing is replaced, no second owner is minted.
    assert main(["init", "--state-dir", str(state), *INSECURE]) == 0
    assert "owner token: kept" in capsys.readouterr().out
    assert token_file.read_text().strip() == token
    assert (state / "keys" / "master.key").read_bytes() == master


@pytest.mark.parametrize("weak", ["no-runtime", "process", "public-api", "open-dir",
                                  "open-parent", "symlink"])
def test_init_refuses_a_weak_setup_and_says_why(
        weak: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = _private(tmp_path)
    state = base / "state"
    argv = ["init", "--state-dir", str(state)]
    expected = {"no-runtime": "no OCI runtime", "process": "NO isolation",
                "public-api": "not loopback", "open-dir": "other users can read or write",
                "open-parent": "writable by other users", "symlink": "symlink"}[weak]
    if weak == "no-runtime":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    elif weak == "process":
        argv += ["--runtime", "process"]
    else:
        argv += INSECURE
    if weak == "public-api":
        argv += ["--api-addr", "0.0.0.0:8787"]
    elif weak == "open-dir":
        state.mkdir(mode=0o700)
        state.chmod(0o755)
    elif weak == "open-parent":
        base.chmod(0o777)
    elif weak == "symlink":
        (base / "real").mkdir(mode=0o700)
        state.symlink_to(base / "real")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "refused" in err and expected in err, err
    assert not (state / "keys").exists()  # refused before anything was written


def test_a_public_api_is_accepted_when_asked_for(tmp_path: Path) -> None:
    state = _private(tmp_path) / "state"
    assert main(["init", "--state-dir", str(state), *INSECURE, "--api-addr", "0.0.0.0:8787",
                 "--api-allow-public"]) == 0


def test_json_log_lines_are_one_object_each() -> None:
    import logging

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("ironclaw.x", logging.ERROR, __file__, 1,
                                   "session %s: %d rows\nsecond line", ("ses_1", 3),
                                   sys.exc_info())
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    decoded = json.loads(line)
    assert decoded["level"] == "ERROR" and decoded["logger"] == "ironclaw.x"
    assert decoded["msg"] == "session ses_1: 3 rows\nsecond line"
    assert "RuntimeError: boom" in decoded["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", decoded["ts"])


def test_the_daemon_runs_an_initialised_dir_in_production_mode_with_json_logs(
        tmp_path: Path) -> None:
    """No demo agent, the owner token from init's file works, every log line is JSON."""
    state = _private(tmp_path) / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{state}"\nruntime = "process"\n'
                      'api_addr = "127.0.0.1:0"\nlog_format = "json"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("IRONCLAW_API_TOKEN", None)
    init = subprocess.run([sys.executable, "-m", "ironclaw.cli.controlplane", "init",
                           "--config", str(config), "--allow-insecure-runtime"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    token = (state / "owner.token").read_text().strip()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ironclaw.cli.controlplane", "--config", str(config),
         "--allow-insecure-runtime"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert daemon.stderr is not None
        url, lines = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = daemon.stderr.readline()
            assert line, "the daemon exited: " + "".join(lines)
            lines.append(line)
            found = re.search(r"API listening on (http://\S+)", json.loads(line)["msg"])
            url = found.group(1) if found else None
        assert url is not None
        headers = {"Authorization": f"Bearer {token}"}
        groups = httpx.get(url + "/v1/registry/agent-groups", headers=headers, timeout=10)
        assert groups.status_code == 200, groups.text
        assert groups.json()["agent_groups"] == []  # production: nothing seeded
        chats = httpx.get(url + "/v1/registry/messaging-groups", headers=headers,
                          timeout=10).json()["messaging_groups"]
        assert [(g["channel"], g["platform_id"], g["unknown_sender_policy"])
                for g in chats] == [("local", "console", "public")]
        wirings = httpx.get(url + "/v1/registry/wirings", headers=headers, timeout=10)
        assert wirings.json()["wirings"] == []  # wiring is the gateway's
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        rest = daemon.stderr.read() if daemon.stderr else ""
        out = daemon.stdout.read() if daemon.stdout else ""
        for pipe in (daemon.stderr, daemon.stdout):
            if pipe is not None:
                pipe.close()
    assert token not in out  # an initialised plane prints no token
    for line in lines + rest.splitlines():
        assert json.loads(line)["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}


@pytest.mark.runsc
@pytest.mark.skipif(shutil.which("runsc") is None, reason="needs gVisor runsc on PATH")
def test_init_pins_the_sealed_image_for_gvisor(
        sandbox_image: SandboxImage, sandbox_image_cache: Path, sandbox_tmp: Path) -> None:
    """With runsc, init builds the sealed image (a cache hit on the session's build)
    and pins it where the daemon checks every launch."""
    state = sandbox_tmp / "state"
    assert main(["init", "--state-dir", str(state), "--runtime", "runsc",
                 "--cache-dir", str(sandbox_image_cache)]) == 0
    pin = json.loads((state / "sandbox-image.json").read_text())
    assert pin["digest"] == sandbox_image.digest
    assert stat.S_IMODE((state / "sandbox-image.json").stat().st_mode) == 0o600


@pytest.mark.parametrize(("argv", "file_says", "served"), [
    ([], None, False), ([], "true", True), ([], "false", False),
    (["--dev"], None, True)])
def test_production_serves_the_mock_model_only_when_configured(
        argv: list[str], file_says: str | None, served: bool, tmp_path: Path) -> None:
    from ironclaw.cli.controlplane import build_parser
    from ironclaw.cli.daemon_settings import resolve
    from ironclaw.host.modelproxy import Credentials
    from ironclaw.host.registry import AgentGroup
    from ironclaw.host.sessions.model_provider import UnknownProvider, agent_provider

    config = tmp_path / "config.toml"
    config.write_text(f"mock_model = {file_says}\n" if file_says else "")
    settings = resolve(build_parser().parse_args([*argv, "--config", str(config)]))
    assert settings.config.mock_model is served
    group = AgentGroup(id="g", name="G", folder="g", provider="mock", model="mock")
    credentials = Credentials(mock_model=settings.config.mock_model)
    if served:
        assert agent_provider(group, credentials).model == "mock"
    else:
        with pytest.raises(UnknownProvider, match="mock_model = true"):
            agent_provider(group, credentials)


@pytest.mark.parametrize("name", ["config.toml.example", "config.container.toml"])
def test_the_shipped_config_files_load(name: str) -> None:
    from ironclaw.host.config.file import load_config_file

    loaded = load_config_file(ROOT / "deploy" / name)
    assert loaded["state_dir"] == Path("/var/lib/ironclaw")
    assert loaded.get("mock_model") is not True  # production means no mock by default


async def test_a_production_plane_does_not_start_an_agent_on_the_mock_model(
        tmp_path: Path) -> None:
    """The agent on the mock model is not started, and the log says why and how to
    allow it."""
    import logging

    import trio

    from ironclaw.host.app import ControlPlane
    from ironclaw.host.config import ControlPlaneConfig
    from ironclaw.host.config.devseed import DEMO_CONVERSATION, seed_dev
    from ironclaw.host.modelproxy import Credentials

    config = ControlPlaneConfig(state_dir=tmp_path / "state", runtime="process",
                                allow_insecure_runtime=True, key_dir=tmp_path / "keys",
                                mock_model=False)
    refused = trio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "mock_model = true" in logging.Formatter().format(record):
                refused.set()

    watch = Watch()
    logging.getLogger("ironclaw").addHandler(watch)
    try:
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            await seed_dev(plane.registry)  # an agent on the mock model, wired (setup)
            await plane.local.post(DEMO_CONVERSATION, "alice", "hello")
            with trio.fail_after(30):
                await refused.wait()
            assert not plane.sessions.live_ids()
            nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("ironclaw").removeHandler(watch)


def test_session_retention_is_read_in_days_and_checked(tmp_path: Path) -> None:
    from ironclaw.host.config import ControlPlaneConfig
    from ironclaw.host.config.file import ConfigFileError, load_config_file

    config = tmp_path / "config.toml"
    config.write_text("session_retention_days = 30\n")
    loaded = load_config_file(config)
    assert loaded == {"channels": (), "session_retention_s": 30 * 86_400.0}
    assert ControlPlaneConfig(state_dir=tmp_path, **loaded).session_retention_s == \
        30 * 86_400.0
    assert "session_retention_s" not in load_config_file(ROOT / "deploy" /
                                                         "config.toml.example")
    for bad in ("0", "-1", "true", '"30"'):
        config.write_text(f"session_retention_days = {bad}\n")
        with pytest.raises(ConfigFileError, match="positive number of days"):
            load_config_file(config)
