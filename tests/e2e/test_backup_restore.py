"""Backup a running control plane, wipe its state, restore onto a fresh directory, and
carry on: the conversation goes on where it stopped, and ``ironctl audit verify`` is
green over the old entries and the new ones."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import trio

from ironclaw.cli.backup import main_backup, main_restore
from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.keys import FileMasterKeySource
from ironclaw.host.modelproxy import Credentials
from tests.support.api import plane_config, retire_sessions
from tests.support.ironctl import ironctl

TOKEN = "icw_backup_owner_token_" + "b" * 24


async def _chat(handles: ControlPlaneHandles, text: str) -> str:
    mark = handles.local.cursor(DEMO_CONVERSATION)
    await handles.local.post(DEMO_CONVERSATION, "alice", text)
    with trio.fail_after(60):
        reply = await handles.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)
    return f"{reply.index}:{reply.text}"


async def _backup_while_running(config: ControlPlaneConfig, archive: Path,
                                capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(config, credentials=Credentials()).run)
        assert await _chat(handles, "one") == "1:echo: one"
        assert await _chat(handles, "two") == "3:echo: two"
        # The agent is live and the plane is writing while the snapshot is taken.
        code = await trio.to_thread.run_sync(main_backup, [
            "--state-dir", str(config.state_dir), "--to", str(archive)])
        assert code == 0, capsys.readouterr().err
        await retire_sessions(handles)
        nursery.cancel_scope.cancel()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


async def test_backup_wipe_restore_and_the_conversation_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = plane_config(tmp_path / "old")
    archive = tmp_path / "backup.tar.gz"
    made = await _backup_while_running(old, archive, capsys)
    assert made["sessions"] == 1 and made["includes_master_key"] is False
    assert archive.stat().st_mode & 0o077 == 0
    # The master key is kept apart from the archive, as docs/deploy.md says.
    kept_key = tmp_path / "master.key"
    shutil.copy2(old.state_dir / "keys" / "master.key", kept_key)
    shutil.rmtree(tmp_path / "old")

    new = plane_config(tmp_path / "new")
    refused = await trio.to_thread.run_sync(main_restore, [
        "--from", str(archive), "--state-dir", str(new.state_dir)])
    assert refused == 1 and "--master-key" in capsys.readouterr().err
    stranger = tmp_path / "stranger" / "master.key"
    stranger.parent.mkdir(mode=0o700)
    FileMasterKeySource(stranger).create()
    wrong = await trio.to_thread.run_sync(main_restore, [
        "--from", str(archive), "--state-dir", str(tmp_path / "wrong"),
        "--master-key", str(stranger)])
    assert wrong == 1 and "sealed under master" in capsys.readouterr().err
    assert not (tmp_path / "wrong").exists()  # refused before anything was written
    code = await trio.to_thread.run_sync(main_restore, [
        "--from", str(archive), "--state-dir", str(new.state_dir),
        "--master-key", str(kept_key)])
    assert code == 0, capsys.readouterr().err
    restored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert restored["audit_ok"] is True and restored["audit_entries"] >= made["audit_seq"]

    async with trio.open_nursery() as nursery:
        handles: ControlPlaneHandles = await nursery.start(
            ControlPlane(new, credentials=Credentials()).run)
        principals = Principals(handles.store, handles.api_token_key, audit=handles.audit)
        assert await bootstrap_owner(principals, env_token=TOKEN) is None
        binds = await nursery.start(functools.partial(
            serve_api, handles, ApiSettings(host="127.0.0.1", port=0),
            token_key=handles.api_token_key))
        assert await _chat(handles, "three") == "5:echo: three"
        verify = await ironctl(None, "--addr", binds[0], "--timeout", "30", "audit",
                               "verify", token=TOKEN)
        assert verify.code == 0, verify
        await retire_sessions(handles)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("hostile", ["state/../outside", "state/keys/../../outside",
                                     "elsewhere/file"])
def test_restore_refuses_a_member_outside_the_state_directory(
        hostile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    archive = tmp_path / "hostile.tar.gz"
    manifest = json.dumps({"format": "ironclaw-backup", "version": 1,
                           "includes_master_key": True}).encode()
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("MANIFEST.json", manifest), (hostile, b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target = tmp_path / "restored"
    assert main_restore(["--from", str(archive), "--state-dir", str(target)]) == 1
    assert "unexpected member" in capsys.readouterr().err
    assert not (tmp_path / "outside").exists()
