"""Disk volumes: one per agent group holds its workspace and every session's outbound
directory; a write past the cap fails with ENOSPC wherever it lands on the volume and
costs the host's filesystem no more than the cap; volumes are adopted at start, moved
onto without losing what was there, and released leaving no mount or loop device."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironclaw.host.isolation.volumes import (
    DiskCaps,
    NotAdoptable,
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


def _paths(state: Path, session: str = "s1") -> tuple[Path, Path]:
    return state / "workspaces" / "demo", state / "sessions" / session / "outbound"


@needs_mount
def test_one_cap_holds_the_workspace_and_every_outbound_of_the_group_together(
        state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP))
    workspace, outbound = _paths(state)
    (state / "sessions" / "s2" / "outbound").mkdir(parents=True)
    _, sibling = _paths(state, "s2")
    volumes.ensure(workspace, outbound)
    volumes.ensure(workspace, sibling)
    assert all(os.path.ismount(p) for p in (workspace, outbound, sibling))
    (workspace / "half").write_bytes(b"x" * (CAP // 2))
    # What the workspace holds counts against the session's outbound, and its
    # sibling's: one filesystem, one cap.
    written = _fill(outbound / "fill")
    assert written < CAP // 2
    with pytest.raises(OSError) as full:
        (sibling / "more").write_bytes(b"x" * 1024 * 1024)
    assert full.value.errno == errno.ENOSPC
    # The state directory's own filesystem, and another group's volume, still take writes.
    (state / "host.db").write_bytes(b"still fine")
    (state / "workspaces" / "other").mkdir()
    (state / "sessions" / "s3" / "outbound").mkdir(parents=True)
    volumes.ensure(state / "workspaces" / "other", state / "sessions" / "s3" / "outbound")
    (state / "workspaces" / "other" / "a").write_bytes(b"x" * 1024 * 1024)
    assert os.stat(volumes.image_for("demo")).st_blocks * 512 <= CAP
    assert not (workspace / "lost+found").exists()


@needs_mount
def test_release_leaves_no_mount_or_loop_device_and_start_adopts_again(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP))
    workspace, outbound = _paths(state)
    volumes.ensure(workspace, outbound)
    (workspace / "notes.txt").write_text("durable")
    (outbound / "reply").write_text("undelivered")
    assert leftover_volumes(state)
    volumes.release_all()
    assert leftover_volumes(state) == []
    assert not (workspace / "notes.txt").exists()  # inside the unmounted image
    assert sorted(volumes.mount_existing()) == sorted([workspace.resolve(),
                                                       outbound.resolve()])
    assert (workspace / "notes.txt").read_text() == "durable"
    assert (outbound / "reply").read_text() == "undelivered"
    # A second start (or a killed plane's mounts) is adopted, not mounted twice.
    volumes.mount_existing()
    assert len([e for e in leftover_volumes(state) if e.startswith("mount:")]) == 3


@needs_mount
def test_what_was_written_before_the_volume_moves_onto_it(state: Path) -> None:
    workspace, outbound = _paths(state)
    (workspace / "sub").mkdir()
    (workspace / "sub" / "old.txt").write_text("from before the cap")
    Volumes(state, DiskCaps(CAP)).ensure(workspace, outbound)
    assert os.path.ismount(workspace)
    assert (workspace / "sub" / "old.txt").read_text() == "from before the cap"


@needs_mount
def test_what_does_not_fit_under_the_cap_stays_where_it_was(state: Path) -> None:
    workspace, outbound = _paths(state)
    (workspace / "big").write_bytes(b"x" * 2 * CAP)
    volumes = Volumes(state, DiskCaps(CAP))
    with pytest.raises(VolumeError):
        volumes.ensure(workspace, outbound)
    assert not os.path.ismount(workspace)
    assert (workspace / "big").stat().st_size == 2 * CAP
    assert list((volumes.volume_for("demo") / "workspace").iterdir()) == []
    volumes.release_all()
    assert leftover_volumes(state) == []


@needs_mount
def test_a_cap_of_zero_leaves_the_directories_alone(state: Path) -> None:
    workspace, outbound = _paths(state)
    Volumes(state, DiskCaps(0)).ensure(workspace, outbound)
    assert not os.path.ismount(workspace) and not os.path.ismount(outbound)
    assert not (state / "volumes").exists()


@needs_mount
def test_a_volume_of_the_former_layout_stays_mounted_where_it_was(state: Path) -> None:
    """Before group volumes, each workspace had an image of its own: it is mounted
    where it was, so what it holds is never hidden, and keeps its own cap."""
    workspace, outbound = _paths(state)
    legacy = state / "volumes" / "workspaces" / "demo.img"
    legacy.parent.mkdir(parents=True)
    Volumes(state, DiskCaps(CAP))._create(legacy, CAP)
    volumes = Volumes(state, DiskCaps(CAP))
    assert workspace.resolve() in volumes.mount_existing()
    (workspace / "kept").write_text("from the former layout")
    volumes.ensure(workspace, outbound)
    assert (workspace / "kept").read_text() == "from the former layout"
    volumes.release_all()
    assert leftover_volumes(state) == []


def test_the_config_file_sets_the_caps(tmp_path: Path) -> None:
    from ironclaw.host.config.file import ConfigFileError, load_config_file

    config = tmp_path / "ironclaw.toml"
    config.write_text("[sandbox_disk]\ngroup_bytes = 67108864\n")
    assert load_config_file(config)["sandbox_disk"] == DiskCaps(64 * 1024 * 1024)
    config.write_text("[sandbox_disk]\ngroup_bytes = \"1G\"\n")
    with pytest.raises(ConfigFileError, match="whole number"):
        load_config_file(config)
    config.write_text("[sandbox_disk]\ninbound_bytes = 2097152\n")
    assert load_config_file(config)["sandbox_disk"] == DiskCaps(inbound_bytes=2 * 1024 * 1024)
    config.write_text("[sandbox_disk]\ninbound_bytes = 1\n")
    with pytest.raises(ConfigFileError, match="inbound_bytes must be"):
        load_config_file(config)
    # The former per-directory caps are gone: one cap per agent group now.
    config.write_text("[sandbox_disk]\nworkspace_bytes = 67108864\n")
    with pytest.raises(ConfigFileError, match="unknown"):
        load_config_file(config)


def test_only_a_workspace_and_an_outbound_directory_go_on_a_volume(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP))
    workspace, _ = _paths(state)
    with pytest.raises(VolumeError):
        volumes.ensure(workspace, state / "sessions" / "s1" / "inbound")
    with pytest.raises(ValueError):
        DiskCaps(group_bytes=1024)


@needs_mount
def test_a_volume_that_will_not_mount_does_not_stop_the_others(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP))
    workspace, outbound = _paths(state)
    (state / "workspaces" / "other").mkdir()
    (state / "sessions" / "s2" / "outbound").mkdir(parents=True)
    other = state / "workspaces" / "other"
    volumes.ensure(workspace, outbound)
    volumes.ensure(other, state / "sessions" / "s2" / "outbound")
    volumes.release_all()
    volumes.image_for("demo").write_bytes(b"not an ext4 filesystem")
    assert sorted(volumes.mount_existing()) == sorted(
        [other.resolve(), (state / "sessions" / "s2" / "outbound").resolve()])
    assert not os.path.ismount(workspace)


@needs_mount
def test_a_deleted_session_leaves_nothing_mounted_or_kept_on_the_volume(state: Path) -> None:
    volumes = Volumes(state, DiskCaps(CAP))
    workspace, outbound = _paths(state)
    (state / "sessions" / "s2" / "outbound").mkdir(parents=True)
    _, sibling = _paths(state, "s2")
    volumes.ensure(workspace, outbound)
    volumes.ensure(workspace, sibling)
    (workspace / "notes.txt").write_text("the group's")
    (outbound / "reply").write_bytes(b"x" * (CAP // 2))
    (sibling / "reply").write_text("the sibling's")
    volumes.release_session(state / "sessions" / "s1", None)
    assert not os.path.ismount(outbound) and list(outbound.iterdir()) == []
    assert not (volumes.volume_for("demo") / "outbound" / "s1").exists()
    # Its space is the group's again; the sibling and the workspace are untouched.
    (sibling / "room").write_bytes(b"x" * (CAP // 2))
    assert (sibling / "reply").read_text() == "the sibling's"
    assert (workspace / "notes.txt").read_text() == "the group's"
    volumes.release_session(state / "sessions" / "s2", workspace)
    assert os.path.ismount(workspace) and list(workspace.iterdir()) == []
    volumes.release_session(state / "sessions" / "s2", workspace)  # idempotent
    with pytest.raises(VolumeError):
        volumes.release_session(state / "workspaces" / "demo", None)
    release_volumes(state)
    assert sorted(volumes.mount_existing()) == [workspace.resolve()]  # no session rebound


@needs_mount
def test_a_warm_slots_outbound_becomes_the_sessions_on_the_volume(state: Path) -> None:
    """A claim (``adopt_outbound``): the slot's directory on the volume, with the
    session's entries moved in, is the session's outbound from then on; the old one is
    gone, and a session with a former-layout volume of its own is refused untouched."""
    workspace, outbound = _paths(state)
    slot_outbound = state / "sessions" / "slot" / "outbound"
    slot_outbound.mkdir(parents=True)
    volumes = Volumes(state, DiskCaps(CAP))
    volumes.ensure(workspace, outbound)
    volumes.ensure(workspace, slot_outbound)
    (outbound / "outbound.db").write_text("the session's history")
    # The slot's directory itself, as the sandbox's bind holds it (from its own mount
    # namespace, so the host's bind is not busy).
    held = os.open(volumes.volume_for("demo") / "outbound" / "slot",
                   os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert volumes.adopt_outbound("demo", slot_outbound.parent, outbound.parent)
        assert os.path.ismount(outbound) and not os.path.ismount(slot_outbound)
        assert (outbound / "outbound.db").read_text() == "the session's history"
        assert os.listdir(held) == ["outbound.db"]  # the very directory the slot had
    finally:
        os.close(held)
    on_volume = volumes.volume_for("demo") / "outbound"
    assert sorted(p.name for p in on_volume.iterdir()) == ["s1"]
    former = state / "sessions" / "s2" / "outbound"
    former.mkdir(parents=True)
    legacy = state / "volumes" / "sessions" / "s2.img"
    legacy.parent.mkdir(parents=True)
    volumes._create(legacy, CAP)
    volumes.mount_existing()
    with pytest.raises(NotAdoptable):
        volumes.adopt_outbound("demo", slot_outbound.parent, former.parent)
    assert os.path.ismount(former)
    volumes.release_all()
    assert leftover_volumes(state) == []
