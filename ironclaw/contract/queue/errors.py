"""Typed failures of queue access. Callers match on these, never on sqlite errors."""

from __future__ import annotations


class QueueError(Exception):
    """Base of every queue failure."""


class QueueNotReady(QueueError):
    """The file does not exist yet: its writer has not created it."""


class QueueBusy(QueueError):
    """No consistent snapshot could be taken within the retry budget: the writer
    kept committing, or crashed mid-commit and has not recovered yet. Transient."""


class WrongKeyOrCorrupt(QueueError):
    """The file does not decrypt with the given key, or its pages fail their HMAC in
    a snapshot that was taken cleanly. Not transient: retrying will not help."""


class QueueSchemaError(QueueError):
    """The file decrypts but its tables are not the contract's (a hostile writer can
    rebuild them). The reader refuses to guess."""


class QueueTooLarge(QueueError):
    """The file exceeds the reader's size cap. A hostile writer can grow its own file;
    the reader will not copy an unbounded amount of it."""


class QueueWriteRefused(QueueError):
    """A write was refused before it reached the file: bad input or a closed writer."""


class QueueFileUnsafe(QueueError):
    """Where a queue file or its fence should be there is something else: a symlink,
    FIFO, socket, device, directory or hard link. Only a hostile writer makes one."""
