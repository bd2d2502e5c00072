"""Disk volumes: a write past the cap fails with ENOSPC inside the volume and costs the
host's filesystem no more than the cap; volumes are adopted at start, moved into
without losing what was there, and released leaving no mount or loop device."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironclaw.host.isolation.volumes import (
    DiskCaps,
    VolumeError,
    Volumes,
    leftover_volumes,
    release_volumes,
)

needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mkfs.ext4") is None,
    reason="mounting a volume needs root and e2fsprogs")

CAP = 16 * 1024 * 1024


@pytest.fixture
def state(sandbox_tmp: Path) -> Iterator[Path]:
    state = sandbox_tmp / "state"
    (state / "workspaces" / "demo").mkdir(parents=True)
    (state / "sessions" / "s1" / "outbound").mkdir(parents=True)
    try:
        yield state
    finally:
        release_volumes(state)  # never leave a mount behind, even when a test fails


def _fill(path: Path) -> int:
    written = 0
    with pytest.raises(OSError) as full, path.open("wb") as handle:
        for _ in range(4 * CAP // (1024 * 1024)):
            handle.write(b"x" * 1024 * 1024)
            handle.flush()
            os.fsync(handle.fileno())
            written += 1024 * 1024
    assert full.value.errno == errno.ENOSPC
    return written


@needs_mount
def test_a_full_volume_fails_its_writer_and_costs_the_host_at_most_the_cap(
        state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP, CAP))
    workspace, outbound = state / "workspaces" / "demo", state / "sessions" / "s1" / "outbound"
    volumes.ensure(workspace, CAP)
    volumes.ensure(outbound, CAP)
    assert os.path.ismount(workspace) and os.path.ismount(outbound)
    assert _fill(workspace / "fill") < CAP
    # The other volume, and the state directory's own filesystem, still take writes.
    (outbound / "reply").write_bytes(b"still fine")
    (state / "host.db").write_bytes(b"still fine")
    image = volumes.image_for(workspace)
    assert os.stat(image).st_blocks * 512 <= CAP
    assert not (workspace / "lost+found").exists()


@needs_mount
def test_release_leaves_no_mount_or_loop_device_and_start_adopts_again(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP, CAP))
    workspace = state / "workspaces" / "demo"
    volumes.ensure(workspace, CAP)
    (workspace / "notes.txt").write_text("durable")
    assert leftover_volumes(state)
    volumes.release_all()
    assert leftover_volumes(state) == []
    assert not (workspace / "notes.txt").exists()  # inside the unmounted image
    assert volumes.mount_existing() == [workspace.resolve()]
    assert (workspace / "notes.txt").read_text() == "durable"
    # A second start (or a killed plane's mount) is adopted, not mounted twice.
    volumes.mount_existing()
    assert len([e for e in leftover_volumes(state) if e.startswith("mount:")]) == 1


@needs_mount
def test_what_was_written_before_the_volume_moves_into_it(state: Path) -> None:
    workspace = state / "workspaces" / "demo"
    (workspace / "sub").mkdir()
    (workspace / "sub" / "old.txt").write_text("from before the cap")
    Volumes(state, DiskCaps(CAP, CAP)).ensure(workspace, CAP)
    assert os.path.ismount(workspace)
    assert (workspace / "sub" / "old.txt").read_text() == "from before the cap"
    assert not workspace.with_name("demo.moving").exists()


@needs_mount
def test_a_move_a_crash_interrupted_is_taken_up_again(state: Path) -> None:
    workspace = state / "workspaces" / "demo"
    aside = workspace.with_name("demo.moving")
    workspace.rename(aside)  # as a crash between the rename and the mount leaves it
    workspace.mkdir()
    (aside / "notes.txt").write_text("mid-move")
    Volumes(state, DiskCaps(CAP, CAP)).ensure(workspace, CAP)
    assert (workspace / "notes.txt").read_text() == "mid-move"
    assert not aside.exists()


@needs_mount
def test_what_does_not_fit_under_the_cap_stays_where_it_was(state: Path) -> None:
    workspace = state / "workspaces" / "demo"
    (workspace / "big").write_bytes(b"x" * 2 * CAP)
    with pytest.raises(VolumeError):
        Volumes(state, DiskCaps(CAP, CAP)).ensure(workspace, CAP)
    assert not os.path.ismount(workspace)
    assert (workspace / "big").stat().st_size == 2 * CAP
    assert leftover_volumes(state) == []


@needs_mount
def test_a_cap_of_zero_leaves_the_directory_alone(state: Path) -> None:
    workspace = state / "workspaces" / "demo"
    Volumes(state, DiskCaps(0, CAP)).ensure(workspace, 0)
    assert not os.path.ismount(workspace)
    assert not (state / "volumes").exists()


def test_the_config_file_sets_the_caps(tmp_path: Path) -> None:
    from ironclaw.host.config.file import ConfigFileError, load_config_file

    config = tmp_path / "ironclaw.toml"
    config.write_text("[sandbox_disk]\nworkspace_bytes = 67108864\noutbound_bytes = 0\n")
    assert load_config_file(config)["sandbox_disk"] == DiskCaps(64 * 1024 * 1024, 0)
    config.write_text("[sandbox_disk]\nworkspace_bytes = \"1G\"\n")
    with pytest.raises(ConfigFileError, match="whole number"):
        load_config_file(config)
    config.write_text("[sandbox_disk]\ninbound_bytes = 2097152\n")
    assert load_config_file(config)["sandbox_disk"] == DiskCaps(inbound_bytes=2 * 1024 * 1024)
    config.write_text("[sandbox_disk]\ninbound_bytes = 1\n")
    with pytest.raises(ConfigFileError, match="inbound_bytes must be"):
        load_config_file(config)
    config.write_text("[sandbox_disk]\nhost_bytes = 1\n")
    with pytest.raises(ConfigFileError, match="unknown"):
        load_config_file(config)


def test_only_workspaces_and_outbound_directories_get_volumes(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP, CAP))
    with pytest.raises(VolumeError):
        volumes.image_for(state / "sessions" / "s1" / "inbound")
    with pytest.raises(ValueError):
        DiskCaps(workspace_bytes=1024)


@needs_mount
def test_a_volume_that_will_not_mount_does_not_stop_the_others(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP, CAP))
    workspace, outbound = state / "workspaces" / "demo", state / "sessions" / "s1" / "outbound"
    volumes.ensure(workspace, CAP)
    volumes.ensure(outbound, CAP)
    volumes.release_all()
    volumes.image_for(workspace).write_bytes(b"not an ext4 filesystem")
    assert volumes.mount_existing() == [outbound.resolve()]
    assert not os.path.ismount(workspace)
