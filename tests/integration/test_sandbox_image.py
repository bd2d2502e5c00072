"""The sealed image, built for real from this checkout: what is in it, what is not,
and that the frozen agent runs from it as the agent user."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ironclaw.host.isolation.elf import is_elf, read_elf
from ironclaw.host.isolation.image import SandboxImage, verify_image
from ironclaw.host.isolation.manifest import scan_rootfs
from ironclaw.host.isolation.mountpoints import (
    AGENT_GID,
    AGENT_UID,
    MOUNT_POINTS_DIRS,
    MOUNT_POINTS_FILES,
)
from ironclaw.host.isolation.rootfs import multiarch

FORBIDDEN = re.compile(r"(sh|bash|dash|ash|busybox|python[0-9.]*|pip[0-9.]*|apt.*|dpkg.*)")


def inside(image: SandboxImage, path: str) -> Path:
    return image.rootfs / path.lstrip("/")


def test_the_image_verifies_against_its_digest(sandbox_image: SandboxImage) -> None:
    verify_image(sandbox_image.rootfs, sandbox_image.digest)
    manifest = (sandbox_image.rootfs.parent / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == sandbox_image.digest
    entries = scan_rootfs(sandbox_image.rootfs)
    assert sandbox_image.size_bytes == sum(e.size for e in entries)
    assert sandbox_image.entrypoint == ("/app/ironclaw-agent", "--config",
                                        "/run/ironclaw/agent.json")


def test_no_shell_interpreter_or_package_manager(sandbox_image: SandboxImage) -> None:
    found = [e.path for e in scan_rootfs(sandbox_image.rootfs)
             if e.kind != "dir" and FORBIDDEN.fullmatch(posixpath.basename(e.path))]
    assert found == []
    assert not inside(sandbox_image, "/bin").exists()
    assert not inside(sandbox_image, "/usr").exists()


def test_everything_is_read_only_and_only_the_agent_and_loader_execute(
        sandbox_image: SandboxImage) -> None:
    interpreter = read_elf(inside(sandbox_image, sandbox_image.entrypoint[0])).interpreter
    assert interpreter is not None
    loader = "/" + inside(sandbox_image, interpreter).resolve().relative_to(
        sandbox_image.rootfs.resolve()).as_posix()
    executables = set()
    for entry in scan_rootfs(sandbox_image.rootfs):
        assert not entry.mode & 0o6000, entry  # no setuid, no setgid
        if entry.path == "/tmp":
            assert entry.mode == 0o1777
        elif entry.kind == "dir":
            assert entry.mode == 0o555, entry
        elif entry.kind == "file":
            assert entry.mode in (0o444, 0o555), entry
            if entry.mode & 0o111:
                executables.add(entry.path)
        else:
            assert entry.kind == "symlink", entry
    assert executables == {sandbox_image.entrypoint[0], loader}
    if os.geteuid() == 0:
        owners = {path.lstat().st_uid for path in sandbox_image.rootfs.rglob("*")}
        assert owners == {0}


def test_the_agent_user_and_the_empty_mount_points(sandbox_image: SandboxImage) -> None:
    passwd = {line.split(":")[0]: line.split(":")
              for line in inside(sandbox_image, "/etc/passwd").read_text().splitlines()}
    assert passwd["agent"][2:4] == [str(AGENT_UID), str(AGENT_GID)]
    assert passwd["agent"][5:] == ["/workspace", "/nonexistent"]
    groups = inside(sandbox_image, "/etc/group").read_text().splitlines()
    assert f"agent:x:{AGENT_GID}:" in groups
    for directory in MOUNT_POINTS_DIRS:
        assert inside(sandbox_image, directory).is_dir(), directory
        assert list(inside(sandbox_image, directory).iterdir()) == [], directory
    for file in MOUNT_POINTS_FILES:
        path = inside(sandbox_image, file)
        assert path.is_file() and path.stat().st_size == 0, file


def test_every_elf_finds_what_it_needs_inside_the_image(sandbox_image: SandboxImage) -> None:
    arch = multiarch()
    system = [f"/lib/{arch}", f"/usr/lib/{arch}", "/lib", "/usr/lib"]
    bundle = "/app/_internal"  # the bootloader's LD_LIBRARY_PATH after it re-executes
    checked = 0
    for path in sorted(sandbox_image.rootfs.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        info = read_elf(path)
        where = "/" + path.relative_to(sandbox_image.rootfs).as_posix()
        dirs = [d.replace("$ORIGIN", posixpath.dirname(where)) for d in info.search_path]
        # The bootloader's first start has only the system path.
        dirs += system if where == sandbox_image.entrypoint[0] else [bundle, *system]
        for name in info.needed:
            assert any(inside(sandbox_image, posixpath.join(d, name)).is_file()
                       for d in dirs), f"{where} needs {name}"
        if info.interpreter:
            assert inside(sandbox_image, info.interpreter).is_file(), where
        checked += 1
    assert checked > 20  # the bootloader, libpython, the extension modules, glibc


def test_the_control_plane_and_test_tools_are_not_frozen_in(
        sandbox_image: SandboxImage) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(inside(sandbox_image, sandbox_image.entrypoint[0])))
    modules = set(archive.open_embedded_archive("PYZ.pyz").toc)
    assert {"sandbox_agent.agent", "ironclaw.contract.queue.sandbox", "trio",
            "httpx"} <= modules
    leaked = {m for m in modules
              if m.split(".")[0] in {"pytest", "_pytest", "hypothesis", "setuptools", "pip"}
              or m.startswith(("ironclaw.host", "ironclaw.cli", "ironclaw.runtime"))}
    assert leaked == set()


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_the_frozen_agent_runs_from_the_image_as_the_agent_user(
        sandbox_image: SandboxImage) -> None:
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    result = subprocess.run(
        [chroot, f"--userspec={AGENT_UID}:{AGENT_GID}", str(sandbox_image.rootfs),
         sandbox_image.entrypoint[0], "--self-check"],
        env={"LANG": "C.UTF-8"}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frozen"] is True
    assert report["sqlcipher"].startswith("4.")
