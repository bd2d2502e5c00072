"""File tools stay inside the workspace, whatever path the model is talked into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_agent.workspace import Workspace, WorkspaceError


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Workspace, Path, Path]:
    root = tmp_path / "workspace"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the key")
    (root / "notes.txt").write_text("inside")
    (root / "sub").mkdir()
    (root / "sub" / "deep.txt").write_text("deeper")
    return Workspace(root), root, outside


def test_reads_and_writes_inside(layout: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = layout
    assert ws.read_text("notes.txt", max_bytes=100) == "inside"
    assert ws.read_text("./sub/deep.txt", max_bytes=100) == "deeper"
    assert ws.write_text("new/dir/file.txt", "hello", max_bytes=100) == 5
    assert (root / "new" / "dir" / "file.txt").read_text() == "hello"
    assert ws.list_dir(".", max_entries=10) == ["new/", "notes.txt (6 bytes)", "sub/"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside/secret.txt",
                                  "sub/../../outside/secret.txt", "sub/../notes.txt",
                                  "..", ""])
def test_absolute_and_dotdot_paths_are_refused(layout: tuple[Workspace, Path, Path],
                                               path: str) -> None:
    ws, _, _ = layout
    with pytest.raises(WorkspaceError):
        ws.read_text(path, max_bytes=100)
    with pytest.raises(WorkspaceError):
        ws.write_text(path, "x", max_bytes=100)


def test_symlinks_out_are_refused_and_symlinks_within_are_followed(
        layout: tuple[Workspace, Path, Path]) -> None:
    ws, root, outside = layout
    (root / "escape").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside)
    (root / "dangling_out").symlink_to(outside / "not-yet.txt")
    (root / "alias").symlink_to(root / "notes.txt")
    for path in ("escape", "escape_dir/secret.txt"):
        with pytest.raises(WorkspaceError, match="outside"):
            ws.read_text(path, max_bytes=100)
    for path in ("escape", "escape_dir/planted.txt", "dangling_out"):
        with pytest.raises(WorkspaceError, match="outside"):
            ws.write_text(path, "overwrite", max_bytes=100)
    with pytest.raises(WorkspaceError, match="outside"):
        ws.list_dir("escape_dir", max_entries=10)
    assert (outside / "secret.txt").read_text() == "the key"
    assert not (outside / "planted.txt").exists() and not (outside / "not-yet.txt").exists()
    assert ws.read_text("alias", max_bytes=100) == "inside"
    ws.write_text("alias", "through the alias", max_bytes=100)
    assert (root / "notes.txt").read_text() == "through the alias"


def test_a_fifo_is_refused_without_hanging(layout: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = layout
    os.mkfifo(root / "pipe")
    with pytest.raises(WorkspaceError, match="not a regular file"):
        ws.read_text("pipe", max_bytes=100)


def test_size_limits(layout: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = layout
    (root / "big.txt").write_text("x" * 101)
    with pytest.raises(WorkspaceError, match="limit"):
        ws.read_text("big.txt", max_bytes=100)
    with pytest.raises(WorkspaceError, match="limit"):
        ws.write_text("big2.txt", "y" * 101, max_bytes=100)
    assert not (root / "big2.txt").exists()


def test_binary_files_are_refused_as_text(layout: tuple[Workspace, Path, Path]) -> None:
    ws, root, _ = layout
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(WorkspaceError, match="UTF-8"):
        ws.read_text("blob.bin", max_bytes=100)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(["", ".", "..", "escape", "sub", "deep.txt",
                                      "secret.txt", "notes.txt", "/"]),
                     max_size=6).map("/".join))
def test_no_path_resolves_outside(layout: tuple[Workspace, Path, Path], path: str) -> None:
    ws, root, outside = layout
    if not (root / "escape").is_symlink():
        (root / "escape").symlink_to(outside)
    try:
        resolved = ws.resolve_existing(path, allow_root=True)
    except WorkspaceError:
        return
    assert resolved == root.resolve() or resolved.is_relative_to(root.resolve())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_write_that_would_leave_no_room_for_the_queue_is_refused(tmp_path: Path) -> None:
    """The workspace shares its volume with the agent's queue: the last eighth of a
    small volume (32 MiB of a large one) stays free for the queue's commits."""
    import subprocess

    root = tmp_path / "workspace"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], check=True)
    try:
        ws = Workspace(root)
        assert ws.write_text("a", "x" * (3 * 1024 * 1024), max_bytes=8 << 20) == 3 << 20
        with pytest.raises(WorkspaceError, match="kept for the agent's own queue"):
            ws.write_text("b", "x" * (700 * 1024), max_bytes=8 << 20)
        assert not (root / "b").exists()
        assert ws.write_text("c", "x" * (200 * 1024), max_bytes=8 << 20) == 200 * 1024
    finally:
        subprocess.run(["umount", str(root)], check=True)
