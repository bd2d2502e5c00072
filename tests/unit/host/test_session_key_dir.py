"""The directory session key files go in is ours alone, or the control plane refuses
to start: another local user who made it first (in /dev/shm anyone can) would read
every session's queue keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.keys import SessionKeyDirUnsafe, ensure_session_key_dir
from ironclaw.host.modelproxy import Credentials


def test_a_missing_key_dir_is_created_private(tmp_path: Path) -> None:
    key_dir = tmp_path / "shm" / f"ironclaw-{os.getuid()}" / "keys"
    ensure_session_key_dir(key_dir)
    for directory in (key_dir, key_dir.parent):
        info = os.lstat(directory)
        assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o700)
    ensure_session_key_dir(key_dir)  # a second start accepts its own directory


def test_a_key_dir_opened_for_search_by_the_isolator_is_accepted(tmp_path: Path) -> None:
    key_dir = tmp_path / "ironclaw" / "keys"
    ensure_session_key_dir(key_dir)
    for directory in (key_dir, key_dir.parent):
        directory.chmod(0o711)  # what OciIsolator._open_for_search leaves behind
    ensure_session_key_dir(key_dir)


@pytest.mark.parametrize("which", ["parent", "keys"])
def test_a_symlink_in_place_of_the_key_dir_is_refused(tmp_path: Path, which: str) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir(mode=0o700)
    key_dir = tmp_path / "ironclaw" / "keys"
    if which == "parent":
        key_dir.parent.symlink_to(elsewhere)
    else:
        key_dir.parent.mkdir(mode=0o700)
        key_dir.symlink_to(elsewhere)
    with pytest.raises(SessionKeyDirUnsafe, match="not a directory"):
        ensure_session_key_dir(key_dir)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("which", ["parent", "keys"])
def test_a_key_dir_others_can_write_is_refused(tmp_path: Path, which: str) -> None:
    key_dir = tmp_path / "ironclaw" / "keys"
    key_dir.mkdir(mode=0o700, parents=True)
    (key_dir if which == "keys" else key_dir.parent).chmod(0o777)
    with pytest.raises(SessionKeyDirUnsafe, match="writable by group or others"):
        ensure_session_key_dir(key_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_key_dir_made_by_another_user_is_refused(tmp_path: Path) -> None:
    key_dir = tmp_path / "ironclaw" / "keys"
    key_dir.mkdir(mode=0o700, parents=True)
    os.chown(key_dir.parent, 4242, 4242)
    with pytest.raises(SessionKeyDirUnsafe, match="owned by uid 4242"):
        ensure_session_key_dir(key_dir)


async def test_the_control_plane_refuses_to_start_on_an_unsafe_key_dir(
        tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir(mode=0o700)
    key_dir = tmp_path / "shm" / "keys"
    key_dir.parent.mkdir(mode=0o700)
    key_dir.symlink_to(elsewhere)
    config = ControlPlaneConfig(state_dir=tmp_path / "state", dev=True, runtime="process",
                                key_dir=key_dir)
    with pytest.raises(SessionKeyDirUnsafe, match=str(key_dir)):
        await ControlPlane(config, credentials=Credentials()).run()
    assert not (tmp_path / "state" / "host.db").exists()
