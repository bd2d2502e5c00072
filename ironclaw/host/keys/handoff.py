"""Handing a session's queue keys to its sandbox.

The keys travel as a file on a host tmpfs, bound read-only into the sandbox at
``/run/ironclaw/session.key`` (docs/design.md, invariant 4): never an environment
variable or argument, which other processes on the host can read from /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

from ironclaw.host import private_files as _fs
from ironclaw.host.keys.errors import SessionKeyDirUnsafe

QUEUE_KEY_BYTES = 32
SESSION_KEY_FILE_MODES = frozenset({0o400, 0o440})


def split_queue_keys(secret: bytes) -> tuple[bytes, bytes]:
    """``(inbound, outbound)`` SQLCipher raw keys from a 64-byte session secret."""
    if len(secret) != 2 * QUEUE_KEY_BYTES:
        raise ValueError(f"a session's queue secret is exactly {2 * QUEUE_KEY_BYTES} bytes")
    return secret[:QUEUE_KEY_BYTES], secret[QUEUE_KEY_BYTES:]


def render_session_key_file(secret: bytes) -> bytes:
    inbound, outbound = split_queue_keys(secret)
    return f"inbound={inbound.hex()}\noutbound={outbound.hex()}\n".encode("ascii")


def write_session_key_file(
    path: os.PathLike[str] | str,
    secret: bytes,
    *,
    mode: int = 0o400,
    group: int | None = None,
) -> None:
    """Atomically write the key file: read-only, never a moment half-written.

    ``mode`` 0o440 with ``group`` lets a sandbox whose mapped uid differs from the
    host's read the file through group permission instead of ownership.
    """
    if mode not in SESSION_KEY_FILE_MODES:
        raise ValueError("a session key file is mode 0400 or 0440")
    if group is not None and mode != 0o440:
        raise ValueError("a group only makes sense with mode 0440")
    _fs.atomic_replace(Path(path), render_session_key_file(secret), mode=mode, group=group)


def ensure_session_key_dir(key_dir: Path) -> None:
    """Create the directory session key files go in, and its parent, or refuse them.

    The default lives in ``/dev/shm``, a directory every local user can write, at a
    path anyone can predict: another user could have made it first, as their own
    directory or as a symlink to one, and then read every key written there. So each
    of the two is made with ``mkdir`` (which never follows a symlink), then checked
    with ``lstat`` exactly as the master key's directory is: a real directory, ours,
    writable by nobody else. In ``/dev/shm`` the sticky bit keeps others from
    renaming or removing it afterwards. Anything else raises
    :class:`SessionKeyDirUnsafe`, and the control plane does not start.
    """
    key_dir.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in (key_dir.parent, key_dir):
        try:
            _fs.ensure_private_dir(directory, error=SessionKeyDirUnsafe)
        except SessionKeyDirUnsafe as exc:
            raise SessionKeyDirUnsafe(
                f"the session key directory {key_dir} is not safe to use: {exc}. Remove "
                "it, or set key_dir to a directory only this user can write") from None
