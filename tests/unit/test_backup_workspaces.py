"""A backup reads agent-written workspaces as hostile: through descriptors and the
hardened opener, keeping symlinks as links and leaving out what is not a lone file."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import trio

from ironclaw.cli.backup import add_workspaces


def _archive(root: Path) -> tuple[dict[str, tarfile.TarInfo], dict[str, bytes], int]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        left_out = add_workspaces(tar, root, "state/workspaces")
    raw.seek(0)
    with tarfile.open(fileobj=raw) as tar:
        members = {m.name: m for m in tar.getmembers()}
        data = {name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for name, m in members.items() if m.isfile()}
    return members, data, left_out


def test_files_links_and_hostile_entries(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    (root / "g1" / "sub").mkdir(parents=True)
    (root / "g1" / "notes.txt").write_text("kept")
    (root / "g1" / "sub" / "deep.txt").write_text("kept too")
    (root / "g1" / "passwd").symlink_to("/etc/passwd")
    (root / "g1" / "etc").symlink_to("/etc")
    os.mkfifo(root / "g1" / "fifo")
    (root / "g1" / "twice").write_text("a hard link could be a host file")
    os.link(root / "g1" / "twice", root / "g1" / "twin")

    members, data, left_out = _archive(root)

    base = "state/workspaces/g1"
    assert data == {f"{base}/notes.txt": b"kept", f"{base}/sub/deep.txt": b"kept too"}
    assert members[f"{base}/passwd"].issym()
    assert members[f"{base}/passwd"].linkname == "/etc/passwd"
    assert members[f"{base}/etc"].issym()  # kept as a link, never entered
    assert not any(name.startswith(f"{base}/etc/") for name in members)
    assert members[f"{base}/sub"].isdir()
    assert left_out == 3  # the FIFO and both names of the hard link
    assert f"{base}/fifo" not in members


async def test_a_fifo_never_stalls_the_backup(tmp_path: Path) -> None:
    """A FIFO nobody writes would block a plain open() for good."""
    root = tmp_path / "workspaces"
    root.mkdir()
    os.mkfifo(root / "trap")
    with trio.fail_after(10):
        _members, _data, left_out = await trio.to_thread.run_sync(_archive, root)
    assert left_out == 1
