"""File access confined to the workspace.

The sandbox is the real wall; this is the inner one, so that a model talked into
reading ``../../run/ironclaw/session.key`` gets a refusal rather than whatever the
mount layout happens to allow. Paths are relative to the workspace, may not contain
``..``, and are resolved strictly (every symlink followed) before the result is
checked to lie inside the workspace. Only regular files are opened, with
``O_NOFOLLOW`` and ``O_NONBLOCK`` (a planted FIFO must not hang the agent), and the
opened descriptor is checked once more against the workspace, which closes the window
between resolving a path and opening it.

Every method blocks; callers run them in a worker thread.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path, PurePosixPath

MAX_PATH_BYTES = 4096
# The workspace shares one disk volume with the agent's own outbound queue (the host's
# cap over everything an agent group writes), so a write that would leave less than
# this much of the volume free is refused: an honest agent that fills its workspace
# fails that tool call, not every commit of its queue after it. The eighth of a small
# volume, at most 32 MiB. (A hostile agent can still fill the volume; it then fails
# only its own group.)
QUEUE_HEADROOM_MAX_BYTES = 32 * 1024 * 1024
QUEUE_HEADROOM_SHARE = 8


class WorkspaceError(Exception):
    """A refused or failed file operation, worded for the model."""


class Workspace:
    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def _real_root(self) -> Path:
        try:
            return self._root.resolve(strict=True)
        except (OSError, RuntimeError):
            raise WorkspaceError("the workspace is not available") from None

    def _parts(self, relative: str, *, allow_root: bool = False) -> tuple[str, ...]:
        if not isinstance(relative, str) or "\x00" in relative:
            raise WorkspaceError("a path must be text without NUL characters")
        if len(relative.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
            raise WorkspaceError("the path is too long")
        pure = PurePosixPath(relative)
        if pure.is_absolute():
            raise WorkspaceError(
                "absolute paths are refused: give a path relative to the workspace")
        if ".." in pure.parts:
            raise WorkspaceError("'..' is refused: paths stay inside the workspace")
        parts = tuple(p for p in pure.parts if p != ".")
        if not parts and not allow_root:
            raise WorkspaceError("a file path is required")
        return parts

    def _inside(self, path: Path, root: Path) -> Path:
        if path != root and not path.is_relative_to(root):
            raise WorkspaceError("the path leads outside the workspace")
        return path

    def resolve_existing(self, relative: str, *, allow_root: bool = False) -> Path:
        """The real path of something that exists, followed through every symlink."""
        root = self._real_root()
        candidate = root.joinpath(*self._parts(relative, allow_root=allow_root))
        try:
            resolved = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise WorkspaceError(f"no such file or directory: {relative!r:.200}") from None
        except (OSError, RuntimeError):
            raise WorkspaceError(f"cannot resolve {relative!r:.200}") from None
        return self._inside(resolved, root)

    def resolve_for_write(self, relative: str) -> Path:
        """Where a write to ``relative`` lands, creating missing parent directories.
        A symlink at the target (even a dangling one) is resolved and must stay inside."""
        root = self._real_root()
        parts = self._parts(relative)
        parent = root
        for index, part in enumerate(parts[:-1]):
            step = parent / part
            if os.path.lexists(step):
                parent = self.resolve_existing("/".join(parts[:index + 1]))
                if not parent.is_dir():
                    raise WorkspaceError(f"{'/'.join(parts[:index + 1])!r} is not a directory")
            else:
                # A name that does not exist yet cannot be a symlink: creating it is safe.
                step.mkdir(mode=0o755)
                parent = step
        target = parent / parts[-1]
        if os.path.lexists(target):
            try:
                target = self._inside(target.resolve(strict=False), root)
            except (OSError, RuntimeError):
                raise WorkspaceError(f"cannot resolve {relative!r:.200}") from None
            if target.is_dir():
                raise WorkspaceError(f"{relative!r:.200} is a directory")
        return target

    def read_text(self, relative: str, *, max_bytes: int) -> str:
        path = self.resolve_existing(relative)
        root = self._real_root()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise WorkspaceError(f"cannot open {relative!r:.200}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise WorkspaceError(f"{relative!r:.200} is not a regular file")
            self._check_descriptor(fd, root)
            if info.st_size > max_bytes:
                raise WorkspaceError(f"{relative!r:.200} is {info.st_size} bytes; "
                                     f"the limit is {max_bytes}")
            data = _read_up_to(fd, max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > max_bytes:
            raise WorkspaceError(f"{relative!r:.200} exceeds {max_bytes} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkspaceError(f"{relative!r:.200} is not UTF-8 text") from None

    def write_text(self, relative: str, content: str, *, max_bytes: int) -> int:
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise WorkspaceError("content is not valid Unicode") from None
        if len(data) > max_bytes:
            raise WorkspaceError(f"content is {len(data)} bytes; the limit is {max_bytes}")
        target = self.resolve_for_write(relative)
        self._require_room(relative, len(data))
        # Write beside the target and rename over it: a reader never sees half a file,
        # and the rename replaces a name rather than following one.
        # Random, not the pid: every sandbox's agent may be pid 1, and sandboxes of one
        # agent group share the workspace.
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise WorkspaceError(f"cannot write {relative!r:.200}: {exc.strerror}") from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise WorkspaceError(f"cannot write {relative!r:.200}: {exc.strerror}") from None
        return len(data)

    def _require_room(self, relative: str, size: int) -> None:
        try:
            volume = os.statvfs(self._root)
        except OSError:
            return  # the write itself will say what is wrong
        free = volume.f_bavail * volume.f_frsize
        headroom = min(QUEUE_HEADROOM_MAX_BYTES,
                       volume.f_blocks * volume.f_frsize // QUEUE_HEADROOM_SHARE)
        if free - size < headroom:
            raise WorkspaceError(
                f"cannot write {relative!r:.200}: no space left in the workspace "
                f"({free} bytes free, {headroom} of them kept for the agent's own queue)")

    def list_dir(self, relative: str, *, max_entries: int) -> list[str]:
        path = self.resolve_existing(relative or ".", allow_root=True)
        if not path.is_dir():
            raise WorkspaceError(f"{relative!r:.200} is not a directory")
        lines: list[str] = []
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if len(lines) == max_entries:
                    lines.append("... (more entries not shown)")
                    break
                if entry.is_symlink():
                    lines.append(f"{entry.name} (symlink)")
                elif entry.is_dir(follow_symlinks=False):
                    lines.append(f"{entry.name}/")
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    lines.append(f"{entry.name} ({size} bytes)")
        return lines

    def _check_descriptor(self, fd: int, root: Path) -> None:
        """The file we opened is the one we checked: ask the kernel where it lives."""
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return  # no /proc: the strict resolve above is the check
        self._inside(opened, root)


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = os.read(fd, min(1 << 16, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
