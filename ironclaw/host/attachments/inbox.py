"""Attachments into a session's workspace, under ``inbox/<session>/<message>/``.

The workspace is the agent's: it may have planted anything anywhere in it (a symlink
at ``inbox/``, a FIFO where a file is about to go), and a sibling session of its group
may be changing it while we write. So every step goes through the hardened helpers of
:mod:`ironclaw.contract.untrusted_files`: directories are walked one name at a time
through descriptors without following a link (and made where missing), and each file
is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` in the message's directory, so a
name already taken is never written through, only numbered around.

Each file is streamed: its first bytes are held back until its type is sniffed
(:mod:`.sniff`), then every chunk is written as it arrives, and the transfer stops at
the cap (the smaller of the file cap and what is left of the session's quota), the
partial file removed. The quota counts the bytes in the session's inbox folder now,
so a file the agent deletes gives its room back. A full workspace volume (the group's
disk cap, see ``host/isolation/volumes.py``) refuses the file the same way. Files are
mode 0640 and directories 0750, owned by the workspace's owner (the sandbox uid):
readable by the agent, never executable.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from ironclaw.contract.untrusted_files import UnsafeFile, create_untrusted, open_untrusted_dir

from .model import AttachmentPolicy, AttachmentRefused, InboundAttachment, StoredFile
from .names import numbered, safe_name
from .render import render_attachments
from .sniff import HEAD_BYTES, TEXT, TextCheck, sniff
from .workspaces import WORKSPACE_FLAGS

__all__ = ["INBOX_DIR", "AttachmentInbox", "message_folder"]

T = TypeVar("T")

INBOX_DIR = "inbox"
FILE_MODE = 0o640
DIR_MODE = 0o750
_MAX_NUMBERED = 50
_MAX_QUOTA_ENTRIES = 4096
_FOLDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def message_folder(message_id: str) -> str:
    """A message id as a folder name (ids may hold ``.`` and ``:``)."""
    return "".join(c if c in _FOLDER_CHARS else "_" for c in message_id)[:128] or "message"


class _Target:
    """The message's folder, held open; blocking methods, run on a worker thread."""

    def __init__(self, workspace: Path, session_id: str, message_id: str) -> None:
        root = os.open(workspace, WORKSPACE_FLAGS)
        try:
            info = os.fstat(root)
            self.owner: tuple[int, int] | None = (info.st_uid, info.st_gid)
            if self.owner == (os.geteuid(), os.getegid()):
                self.owner = None
            self.session_fd = open_untrusted_dir((INBOX_DIR, session_id), dir_fd=root,
                                                 create_mode=DIR_MODE, owner=self.owner)
        finally:
            os.close(root)
        try:
            self.folder = message_folder(message_id)
            self.message_fd = open_untrusted_dir((self.folder,), dir_fd=self.session_fd,
                                                 create_mode=DIR_MODE, owner=self.owner)
        except BaseException:
            os.close(self.session_fd)
            raise

    def close(self) -> None:
        os.close(self.message_fd)
        os.close(self.session_fd)

    def used_bytes(self) -> int:
        """The bytes under the session's inbox folder: two levels, links not followed.
        Every entry at either level counts toward one cap, since the agent may plant
        any number of them and the scan holds the inbox's shared worker limiter."""
        total = 0
        count = itertools.count(1)
        with os.scandir(self.session_fd) as folders:
            for folder in folders:
                _count_one(count)
                if not folder.is_dir(follow_symlinks=False):
                    total += folder.stat(follow_symlinks=False).st_size
                    continue
                fd = open_untrusted_dir((folder.name,), dir_fd=self.session_fd)
                try:
                    with os.scandir(fd) as files:
                        for entry in files:
                            _count_one(count)
                            total += entry.stat(follow_symlinks=False).st_size
                finally:
                    os.close(fd)
        return total

    def create(self, name: str) -> tuple[str, int]:
        for number in range(1, _MAX_NUMBERED + 1):
            candidate = name if number == 1 else numbered(name, number)
            try:
                return candidate, create_untrusted(candidate, dir_fd=self.message_fd,
                                                   mode=FILE_MODE, owner=self.owner)
            except FileExistsError:
                continue
        raise AttachmentRefused("no free name for the file in its folder")

    def remove(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self.message_fd)


def _count_one(count: itertools.count[int]) -> None:
    if next(count) > _MAX_QUOTA_ENTRIES:
        raise AttachmentRefused("the session's inbox holds too many files")


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise AttachmentRefused("the workspace is full") from None
        raise


class AttachmentInbox:
    """Receives a message's attachments into a session's workspace (see the module
    docstring). ``workspace_of`` names an agent group's workspace on the host."""

    def __init__(self, workspace_of: Callable[[str], Awaitable[Path]],
                 policy: AttachmentPolicy | None = None) -> None:
        self._workspace_of = workspace_of
        self.policy = policy or AttachmentPolicy()
        self._limiter = trio.CapacityLimiter(2)

    async def receive(self, session_id: str, agent_group_id: str, message_id: str,
                      attachments: Sequence[InboundAttachment]) -> str:
        """Store what can be stored; return the block that tells the agent about each
        file (where it is, or why it is not there), for the message's content."""
        results: list[StoredFile | tuple[str, str]] = []
        wanted = list(attachments)[:self.policy.max_files_per_message]
        target: _Target | None = None
        try:
            workspace = await self._workspace_of(agent_group_id)
            target = await self._thread(functools.partial(
                _Target, workspace, session_id, message_id))
        except (OSError, LookupError) as exc:
            # UnsafeFile: the agent planted a link or a file at inbox/ or below.
            reason = "the workspace's inbox is not usable"
            if not isinstance(exc, UnsafeFile):
                reason += f" ({type(exc).__name__})"
            results = [(a.declared_name, reason) for a in wanted]
        # One budget for the whole message: the router waits on it.
        deadline = trio.current_time() + self.policy.download_timeout_s
        try:
            for attachment in wanted if target is not None else ():
                assert target is not None
                try:
                    with trio.fail_at(deadline):
                        results.append(await self._store(target, session_id, attachment))
                except AttachmentRefused as exc:
                    results.append((attachment.declared_name, str(exc)))
                except trio.TooSlowError:
                    results.append((attachment.declared_name, "the download took too long"))
                except OSError as exc:
                    results.append((attachment.declared_name,
                                    f"it could not be stored ({type(exc).__name__})"))
        finally:
            if target is not None:
                target.close()
        skipped = len(attachments) - len(wanted)
        return render_attachments(results, skipped=skipped)

    async def _thread(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def _store(self, target: _Target, session_id: str,
                     attachment: InboundAttachment) -> StoredFile:
        if attachment.refused is not None or attachment.source is None:
            raise AttachmentRefused(attachment.refused or "it was not offered for download")
        used = await self._thread(target.used_bytes)
        room = self.policy.session_quota_bytes - used
        if room <= 0:
            raise AttachmentRefused("the session's file quota is used up")
        cap = min(self.policy.max_file_bytes, room)
        async with attachment.source() as chunks:
            try:
                return await self._stream(target, session_id, attachment, chunks, cap)
            finally:
                # A stream left part-read is closed here, not by the garbage collector.
                close = getattr(chunks, "aclose", None)
                if close is not None:
                    with trio.CancelScope(shield=True):
                        await close()

    async def _stream(self, target: _Target, session_id: str, attachment: InboundAttachment,
                      chunks: AsyncIterator[bytes], cap: int) -> StoredFile:
        head = b""
        iterator = aiter(chunks)
        finished = False
        while len(head) < HEAD_BYTES:
            try:
                head += await anext(iterator)
            except StopAsyncIteration:
                finished = True
                break
        if len(head) > cap:
            raise AttachmentRefused(_too_large(cap, self.policy))
        media_type = sniff(head, complete=finished)
        if media_type is None or media_type not in self.policy.allowed_types:
            raise AttachmentRefused(f"its type ({media_type or 'unknown binary'}) is not "
                                    "allowed")
        text = TextCheck() if media_type == TEXT else None
        if text is not None and not text.feed(head, final=finished):
            raise AttachmentRefused("it is not text")
        name, fd = await self._thread(functools.partial(
            target.create, safe_name(attachment.declared_name, media_type)))
        size = 0
        try:
            data = head
            while True:
                size += len(data)
                if size > cap:
                    raise AttachmentRefused(_too_large(cap, self.policy))
                await self._thread(functools.partial(_write_all, fd, data))
                if finished:
                    break
                try:
                    data = await anext(iterator)
                except StopAsyncIteration:
                    finished, data = True, b""
                if text is not None and not text.feed(data, final=finished):
                    raise AttachmentRefused("it is not text")
        except BaseException:
            os.close(fd)
            target.remove(name)  # one unlinkat of a name we created: never blocks long
            raise
        os.close(fd)
        path = f"{INBOX_DIR}/{session_id}/{target.folder}/{name}"
        return StoredFile(name=name, path=path, size=size, media_type=media_type)


def _too_large(cap: int, policy: AttachmentPolicy) -> str:
    if cap < policy.max_file_bytes:
        return "it would exceed the session's file quota"
    return f"it is larger than the cap of {policy.max_file_bytes} bytes"
