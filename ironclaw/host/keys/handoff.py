"""Handing a session's queue keys to its sandbox.

The keys travel as a file on a host tmpfs, bound read-only into the sandbox at
``/run/ironclaw/session.key`` (DESIGN §2 invariant 4): never an environment
variable or argument, which other processes on the host can read from /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

from ironclaw.host import private_files as _fs

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
