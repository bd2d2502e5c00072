"""One control plane per state directory, and a master rotation only while none runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ironclaw.cli.controlplane import main
from ironclaw.host.app import ControlPlane
from ironclaw.host.audit import verify_file
from ironclaw.host.config.statedir_lock import StateDirInUse, hold_state_dir
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose
from tests.support.plane import dev_plane_config

INSECURE = ["--runtime", "process", "--allow-insecure-runtime"]


def test_a_second_holder_is_refused_and_named(tmp_path: Path) -> None:
    with hold_state_dir(tmp_path, what="the first"), \
            pytest.raises(StateDirInUse, match=r"the first, pid \d+"), \
            hold_state_dir(tmp_path, what="the second"):
        pass
    with hold_state_dir(tmp_path, what="the second"):
        pass  # released on exit


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    """The kernel drops a SIGKILLed plane's lock: its successor starts at once."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from ironclaw.host.config.statedir_lock import hold_state_dir\n"
         "with hold_state_dir(Path(sys.argv[1]), what='doomed'):\n"
         "    print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(StateDirInUse, match="doomed"), \
                hold_state_dir(tmp_path, what="successor"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with hold_state_dir(tmp_path, what="successor"):
            pass
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


async def test_a_second_plane_on_one_state_dir_is_refused(tmp_path: Path) -> None:
    config = dev_plane_config(tmp_path / "state", tmp_path / "keys")
    async with trio.open_nursery() as nursery:
        await nursery.start(ControlPlane(config).run)
        with pytest.raises(StateDirInUse):
            await ControlPlane(config).run()
        nursery.cancel_scope.cancel()


def test_rotate_master_reseals_refuses_beside_a_plane_and_is_audited(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "private"
    base.mkdir(mode=0o700)
    state = base / "state"
    assert main(["init", "--state-dir", str(state), *INSECURE]) == 0
    capsys.readouterr()
    master = (state / "keys" / "master.key").read_bytes()
    keystore = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    sessions_before = keystore.subkey(Purpose.HOST_DB)
    keystore.close()

    with hold_state_dir(state, what="a control plane"):
        assert main(["rotate-master", "--state-dir", str(state)]) == 3
        assert "stop it first" in capsys.readouterr().err
    assert (state / "keys" / "master.key").read_bytes() == master  # untouched

    assert main(["rotate-master", "--state-dir", str(state)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["old_fingerprint"] != report["new_fingerprint"]
    assert (state / "keys" / "master.key").read_bytes() != master
    keystore = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    try:
        assert keystore.master_fingerprint == report["new_fingerprint"]
        assert keystore.subkey(Purpose.HOST_DB) == sessions_before  # host.db still opens
        audit = verify_file(state / "audit" / "audit.log", keystore.subkey(Purpose.AUDIT_CHAIN))
    finally:
        keystore.close()
    assert audit.ok
    last = (state / "audit" / "audit.log").read_text().splitlines()[-1]
    assert json.loads(last)["kind"] == "keys.master_rotated"
    assert main(["rotate-master", "--state-dir", str(tmp_path / "nothing")]) == 1
