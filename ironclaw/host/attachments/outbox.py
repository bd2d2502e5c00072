"""A workspace file the agent asked to send (``send_file``), read the hardened way.

The path comes from the sandbox. It must be relative, of plain names (no ``..``, no
empty or dot component); the directories are walked through descriptors without
following a link (:func:`~ironclaw.contract.untrusted_files.open_untrusted_dir`) and the
file is opened by :func:`~ironclaw.contract.untrusted_files.open_untrusted` in the last
one: a symlink, FIFO, device or hard link is refused, and so is a file over the cap, by
its size before a byte is read. The bytes are read under a deadline, off the event loop
(:func:`~ironclaw.contract.untrusted_files.run_untrusted`), their type sniffed and
checked against the same allowlist as inbound files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

import trio

from ironclaw.contract.untrusted_files import (
    UnsafeFile,
    UntrustedFileTooLarge,
    open_untrusted,
    open_untrusted_dir,
    read_bounded,
    run_untrusted,
)

from .model import AttachmentPolicy, AttachmentRefused, OutboundFile
from .names import safe_name
from .sniff import TEXT, TextCheck, sniff
from .workspaces import WORKSPACE_FLAGS

__all__ = ["MAX_PATH_BYTES", "WorkspaceFiles", "read_workspace_file"]

MAX_PATH_BYTES = 4096
_MAX_DEPTH = 32


def _parts(relative: str) -> tuple[str, ...]:
    if "\x00" in relative or len(relative.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise AttachmentRefused("the path is not a usable workspace path")
    if relative.startswith("/workspace/"):
        relative = relative[len("/workspace/"):]
    pure = PurePosixPath(relative)
    parts = pure.parts
    if pure.is_absolute() or not parts or len(parts) > _MAX_DEPTH or any(
            part in ("", ".", "..") for part in parts):
        raise AttachmentRefused("give a path relative to the workspace, without '..'")
    return parts


def read_workspace_file(workspace: Path, relative: str, *,
                        policy: AttachmentPolicy) -> OutboundFile:
    """Blocking: the file at ``relative`` in ``workspace``, checked as described above."""
    parts = _parts(relative)
    root = os.open(workspace, WORKSPACE_FLAGS)
    try:
        folder = open_untrusted_dir(parts[:-1], dir_fd=root)
        try:
            with open_untrusted(parts[-1], max_bytes=policy.max_file_bytes,
                                dir_fd=folder) as (fd, _size):
                data = read_bounded(fd, policy.max_file_bytes)
        finally:
            os.close(folder)
    except FileNotFoundError:
        raise AttachmentRefused("no such file in the workspace") from None
    except UntrustedFileTooLarge:
        raise AttachmentRefused(
            f"the file is larger than the cap of {policy.max_file_bytes} bytes") from None
    except UnsafeFile:
        raise AttachmentRefused("not a regular file (a link, a folder or a device)") from None
    finally:
        os.close(root)
    media_type = sniff(data, complete=True)
    if media_type == TEXT and not TextCheck().feed(data, final=True):
        media_type = None
    if media_type is None or media_type not in policy.allowed_types:
        raise AttachmentRefused(f"its type ({media_type or 'unknown binary'}) is not allowed")
    return OutboundFile(safe_name(parts[-1], media_type), media_type, data)


class WorkspaceFiles:
    """Reads files out of agent groups' workspaces for ``send_file``."""

    def __init__(self, workspace_of: Callable[[str], Awaitable[Path]],
                 policy: AttachmentPolicy | None = None, *, deadline_s: float = 10.0) -> None:
        self._workspace_of = workspace_of
        self.policy = policy or AttachmentPolicy()
        self._deadline_s = deadline_s
        self._limiter = trio.CapacityLimiter(2)

    async def read(self, agent_group_id: str, relative: str) -> OutboundFile:
        """The file, or AttachmentRefused with a reason fit for the agent and the log."""
        try:
            workspace = await self._workspace_of(agent_group_id)
        except LookupError:
            raise AttachmentRefused("the agent group is gone") from None
        work = functools.partial(read_workspace_file, workspace, relative, policy=self.policy)
        try:
            return await run_untrusted(work, limiter=self._limiter,
                                       deadline_s=self._deadline_s)
        except trio.TooSlowError:
            raise AttachmentRefused("reading the file took too long") from None
        except OSError as exc:
            raise AttachmentRefused(f"the file could not be read ({type(exc).__name__})"
                                    ) from None
