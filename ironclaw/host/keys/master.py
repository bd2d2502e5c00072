"""Where the master key lives: a small protocol and the built-in file source.

Rotation is a two-phase commit across the source and the sealed store, so the
protocol exposes the phases (stage a successor, commit it, or discard it) rather
than a single ``rotate``. A KMS source maps them onto key versions.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Protocol

from ironclaw.host import private_files as _fs
from ironclaw.host.keys.errors import (
    KeyCustodyError,
    KeyFilePermissionError,
    MasterKeyCorrupt,
    MasterKeyMissing,
    MasterKeyPermissionError,
)
from ironclaw.host.keys.subkeys import MASTER_KEY_BYTES

# "IronClaw Master Key", format version 1, then the raw key.
MASTER_FILE_MAGIC = b"ICMK"
MASTER_FILE_VERSION = 1
_MASTER_FILE_HEADER = MASTER_FILE_MAGIC + bytes([MASTER_FILE_VERSION])
MASTER_FILE_BYTES = len(_MASTER_FILE_HEADER) + MASTER_KEY_BYTES
MASTER_FILE_MODE = 0o600
MASTER_FILE_NAME = "master.key"
_NEXT_SUFFIX = ".next"


class MasterKeySource(Protocol):
    """Custody of the master key and of its successor during a rotation."""

    def load(self) -> bytes:
        """The current master. Raises ``MasterKeyMissing`` if none exists."""
        ...

    def create(self) -> bytes:
        """Make the first master. Refuses (``KeyCustodyError``) if one exists."""
        ...

    def load_next(self) -> bytes | None:
        """The staged successor an interrupted rotation left, if any."""
        ...

    def stage_next(self) -> bytes:
        """Generate a successor and store it durably beside the current master."""
        ...

    def commit_next(self) -> None:
        """Atomically make the staged successor the current master."""
        ...

    def discard_next(self) -> None:
        """Forget a staged successor (idempotent)."""
        ...


def _encode(master: bytes) -> bytes:
    return _MASTER_FILE_HEADER + master


def _decode(path: Path, data: bytes) -> bytes:
    if len(data) != MASTER_FILE_BYTES:
        raise MasterKeyCorrupt(
            f"{path} is {len(data)} bytes, a master key file is {MASTER_FILE_BYTES}"
        )
    if not data.startswith(_MASTER_FILE_HEADER):
        raise MasterKeyCorrupt(f"{path} lacks the master key magic and version")
    return data[len(_MASTER_FILE_HEADER) :]


class FileMasterKeySource:
    """The master as a 0600 file in a private directory; its successor as ``<name>.next``.

    Loading refuses a file that is not a regular file owned by us with mode exactly
    0600, or that sits in a directory others can write: a key anyone else could
    read or replace is not a key.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path)
        self.next_path = self.path.with_name(self.path.name + _NEXT_SUFFIX)

    @classmethod
    def in_state_dir(cls, state_dir: os.PathLike[str] | str) -> FileMasterKeySource:
        """The default location, ``<state>/keys/master.key``."""
        return cls(Path(state_dir) / "keys" / MASTER_FILE_NAME)

    def _read(self, path: Path) -> bytes:
        data = _fs.read_private_file(
            path, mode=MASTER_FILE_MODE, max_size=MASTER_FILE_BYTES, error=MasterKeyPermissionError
        )
        return _decode(path, data)

    def load(self) -> bytes:
        try:
            return self._read(self.path)
        except FileNotFoundError:
            raise MasterKeyMissing(f"no master key at {self.path}") from None

    def create(self) -> bytes:
        _fs.ensure_private_dir(self.path.parent, error=KeyFilePermissionError)
        master = secrets.token_bytes(MASTER_KEY_BYTES)
        try:
            _fs.atomic_create(self.path, _encode(master), mode=MASTER_FILE_MODE)
        except FileExistsError:
            raise KeyCustodyError(f"a master key already exists at {self.path}") from None
        return master

    def load_next(self) -> bytes | None:
        try:
            return self._read(self.next_path)
        except FileNotFoundError:
            return None

    def stage_next(self) -> bytes:
        master = secrets.token_bytes(MASTER_KEY_BYTES)
        try:
            _fs.atomic_create(self.next_path, _encode(master), mode=MASTER_FILE_MODE)
        except FileExistsError:
            raise KeyCustodyError(
                f"a rotation is already staged at {self.next_path}; reopen the store to settle it"
            ) from None
        return master

    def commit_next(self) -> None:
        # Validate before the rename: committing a bad file would lose the only good master.
        if self.load_next() is None:
            raise MasterKeyMissing(f"no staged master key at {self.next_path}")
        _fs.rename_durably(self.next_path, self.path)
        _fs.remove_stale_temps(self.path.parent, self.next_path.name)

    def discard_next(self) -> None:
        existed = False
        with contextlib.suppress(FileNotFoundError):
            self.next_path.unlink()
            existed = True
        if existed:
            _fs.fsync_dir(self.path.parent)
        if self.path.parent.is_dir():
            _fs.remove_stale_temps(self.path.parent, self.next_path.name)
            _fs.remove_stale_temps(self.path.parent, self.path.name)
