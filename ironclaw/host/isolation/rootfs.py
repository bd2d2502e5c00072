"""Assembling the sealed rootfs around the frozen agent.

What goes in, and nothing else:
- ``/app``: PyInstaller's onedir output (the bootloader ``/app/ironclaw-agent`` and
  ``/app/_internal`` with libpython, the stdlib and the agent's packages);
- the host shared libraries those ELF files need and PyInstaller leaves out on purpose
  (glibc and friends), found by reading each ELF's ``DT_NEEDED`` and copied under
  ``/lib/<multiarch>``, plus the dynamic loader at the path binaries ask for;
- ``/etc/passwd``, ``/etc/group`` (the agent is uid/gid 65532) and ``/etc/nsswitch.conf``;
- the empty mount points of ``mountpoints``.

Then every path is made read-only and owned by root (when building as root): files
0444, dirs 0555, ``/tmp`` 1777; only the agent and the loader are 0555 files. Shared
libraries need no execute bit (the kernel maps them executable whatever their mode,
unless the mount is noexec), so none gets one.
"""

from __future__ import annotations

import os
import platform
import posixpath
import shutil
import stat
import sysconfig
from pathlib import Path

import attrs

from .elf import ElfInfo, is_elf, read_elf
from .manifest import ImageError
from .mountpoints import (
    AGENT_GID,
    AGENT_UID,
    AGENT_USER,
    MOUNT_POINTS_DIRS,
    MOUNT_POINTS_FILES,
    TMP_DIR,
    TMP_MODE,
)

APP_DIR = "/app"
AGENT_NAME = "ironclaw-agent"
AGENT_BINARY = f"{APP_DIR}/{AGENT_NAME}"
# PyInstaller's onedir bootloader finds libraries on the system path, then re-executes
# itself with LD_LIBRARY_PATH set to this directory; everything in the bundle is
# loaded in that second life. The bootloader's own first start cannot use it.
BUNDLE_LIB_DIR = f"{APP_DIR}/_internal"
# Not in any DT_NEEDED, but glibc dlopens it to unwind a thread in pthread_exit, which
# Python calls when a daemon thread (Trio's worker threads are) outlives shutdown;
# without it glibc aborts the process.
DLOPENED_BY_LIBC = ("libgcc_s.so.1",)

PASSWD = (
    "root:x:0:0:root:/nonexistent:/nonexistent\n"
    f"{AGENT_USER}:x:{AGENT_UID}:{AGENT_GID}:IronClaw agent:/workspace:/nonexistent\n"
    # Files of uids a user namespace does not map show as 65534.
    "nobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n"
)
GROUP = f"root:x:0:\n{AGENT_USER}:x:{AGENT_GID}:\nnogroup:x:65534:\n"
# glibc has the files backend built in; naming it keeps it from trying others.
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files\n"


class ImageBuildError(ImageError):
    """The image could not be built; nothing was installed."""


@attrs.frozen
class CopiedLibrary:
    inside: str  # where it is in the rootfs
    host: str  # the host file its bytes came from


@attrs.frozen
class AssembledRootfs:
    executables: frozenset[str]
    libraries: tuple[CopiedLibrary, ...]


def multiarch() -> str:
    return sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"


def assemble_rootfs(frozen_app: Path, rootfs: Path, *, epoch: int) -> AssembledRootfs:
    """Build the rootfs at ``rootfs`` (which must not exist) around the onedir at
    ``frozen_app``, which is moved into it."""
    rootfs.mkdir(mode=0o755)
    frozen_app.rename(rootfs / APP_DIR.lstrip("/"))
    collector = LibraryCollector(rootfs)
    collector.collect()
    write_etc(rootfs)
    _make_mount_points(rootfs)
    executables = frozenset({AGENT_BINARY, *collector.loaders})
    seal_permissions(rootfs, executables, epoch=epoch)
    return AssembledRootfs(executables, tuple(sorted(collector.copied,
                                                     key=lambda lib: lib.inside)))


class LibraryCollector:
    """Copies in the host libraries that the rootfs's ELF files need and lack."""

    def __init__(self, rootfs: Path, *, reference: str = AGENT_BINARY,
                 extra_host_dirs: tuple[str, ...] = ()) -> None:
        """``reference``: the image's main program, whose ELF class and machine every
        copied library must share. ``extra_host_dirs``: where else on the host its
        libraries may be (an interpreter's own ``LIBDIR``)."""
        self.rootfs = rootfs
        arch = multiarch()
        self.lib_dir = f"/lib/{arch}"
        # The loader's default path; there is no ld.so.cache in the image.
        self.system_dirs = (f"/lib/{arch}", f"/usr/lib/{arch}", "/lib", "/usr/lib")
        self.host_dirs = (*extra_host_dirs, f"/lib/{arch}", f"/usr/lib/{arch}", "/lib64",
                          "/usr/lib64", "/lib", "/usr/lib")
        self.reference = read_elf(self.inside(reference))
        self.copied: list[CopiedLibrary] = []
        self.loaders: set[str] = set()

    def inside(self, path: str) -> Path:
        return self.rootfs / path.lstrip("/")

    def collect(self) -> None:
        app = self.inside(APP_DIR)
        bundled = sorted(
            "/" + path.relative_to(self.rootfs).as_posix()
            for path in app.rglob("*")
            if path.is_file() and not path.is_symlink() and is_elf(path))
        self.collect_from([AGENT_BINARY, *(p for p in bundled if p != AGENT_BINARY)])

    def collect_from(self, programs: list[str]) -> None:
        """Copy in what ``programs`` (ELF files inside the rootfs) and what they load
        need, and glibc's own dlopened helper."""
        queue = list(programs)
        queue.extend(self._copy(name, needed_by="glibc (dlopen)") for name in DLOPENED_BY_LIBC)
        done: set[str] = set()
        while queue:
            path = queue.pop(0)
            if path in done:
                continue
            done.add(path)
            info = read_elf(self.inside(path))
            if info.interpreter:
                queue.append(self._place_interpreter(info.interpreter))
            for name in info.needed:
                if not self._present(name, self._search_dirs(path, info)):
                    queue.append(self._copy(name, needed_by=path))

    def _search_dirs(self, path: str, info: ElfInfo) -> list[str]:
        origin = posixpath.dirname(path)
        dirs = [posixpath.normpath(entry.replace("${ORIGIN}", origin)
                                   .replace("$ORIGIN", origin))
                for entry in info.search_path]
        if path != AGENT_BINARY:
            dirs.append(BUNDLE_LIB_DIR)
        dirs.extend(self.system_dirs)
        return dirs

    def _present(self, name: str, dirs: list[str] | tuple[str, ...]) -> bool:
        # Relative symlinks in the rootfs resolve inside it; the image has no others.
        return any(self.inside(posixpath.join(d, name)).is_file() for d in dirs)

    def _find_on_host(self, name: str, needed_by: str) -> Path:
        for directory in self.host_dirs:
            candidate = Path(directory) / name
            if candidate.is_file() and read_elf(candidate).compatible_with(self.reference):
                return candidate
        raise ImageBuildError(f"{name}, needed by {needed_by}, was not found on this host "
                              f"(searched {', '.join(self.host_dirs)})")

    def _copy(self, name: str, *, needed_by: str) -> str:
        host = self._find_on_host(name, needed_by)
        inside = posixpath.join(self.lib_dir, name)
        target = self.inside(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host.resolve(), target)
        self.copied.append(CopiedLibrary(inside, str(host)))
        return inside

    def _place_interpreter(self, interpreter: str) -> str:
        """Put the loader in the library directory (where a DT_NEEDED on it also looks)
        and, if binaries ask for it elsewhere, a relative symlink there, as Debian does."""
        name = posixpath.basename(interpreter)
        real = posixpath.join(self.lib_dir, name)
        if not self.inside(real).is_file():
            host = Path(interpreter).resolve()
            if not host.is_file():
                raise ImageBuildError(f"the dynamic loader {interpreter} is not on this host")
            self.inside(real).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(host, self.inside(real))
            self.copied.append(CopiedLibrary(real, interpreter))
        if interpreter != real and not os.path.lexists(self.inside(interpreter)):
            link = self.inside(interpreter)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(posixpath.relpath(real, posixpath.dirname(interpreter)))
        self.loaders.add(real)
        return real


def write_etc(rootfs: Path) -> None:
    """The agent uid's passwd and group, and the name service switch, under ``etc``."""
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("nsswitch.conf", NSSWITCH)):
        (etc / name).write_text(text)


def _make_mount_points(rootfs: Path) -> None:
    for directory in MOUNT_POINTS_DIRS:
        (rootfs / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for file in MOUNT_POINTS_FILES:
        path = rootfs / file.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def seal_permissions(rootfs: Path, executables: frozenset[str], *, epoch: int) -> None:
    """Read-only modes, root ownership (when we can) and one fixed mtime everywhere,
    children before their directory so a non-root builder keeps access until the end."""
    as_root = os.geteuid() == 0
    for directory, dirnames, filenames in os.walk(rootfs, topdown=False):
        base = Path(directory)
        for name in [*filenames, *dirnames]:
            path = base / name
            if path.is_symlink():
                if as_root:
                    os.lchown(path, 0, 0)
                os.utime(path, (epoch, epoch), follow_symlinks=False)
                continue
            inside = "/" + path.relative_to(rootfs).as_posix()
            if path.is_dir():
                mode = TMP_MODE if inside == TMP_DIR else 0o555
            else:
                mode = 0o555 if inside in executables else 0o444
            _settle(path, mode, as_root, epoch)
    _settle(rootfs, 0o555, as_root, epoch)


def _settle(path: Path, mode: int, as_root: bool, epoch: int) -> None:
    if as_root:
        os.chown(path, 0, 0)
    os.chmod(path, mode)
    os.utime(path, (epoch, epoch))


def remove_tree(path: Path) -> None:
    """``rmtree`` for a sealed tree: a non-root owner must first make its directories
    writable again."""
    if not os.path.lexists(path):
        return
    if os.geteuid() != 0:
        for directory, _dirs, _files in os.walk(path):
            info = os.lstat(directory)
            if stat.S_ISDIR(info.st_mode):
                os.chmod(directory, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
    shutil.rmtree(path)
