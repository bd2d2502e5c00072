"""Typed failures of key custody.

Every message names files, session ids and fingerprints only, never key material,
so an error can be logged or shown to an operator as it is.
"""

from __future__ import annotations


class KeyCustodyError(Exception):
    """Base of every key custody failure."""


class KeyFilePermissionError(KeyCustodyError):
    """A key file or key directory is not private to this user (mode, owner, symlink)."""


class SessionKeyDirUnsafe(KeyFilePermissionError):
    """The directory session key files go in (or its parent) is not ours alone: a
    symlink, another user's directory, or one others can write."""


class MasterKeyPermissionError(KeyFilePermissionError):
    """The master key file is not mode 0600, not owned by us, or not a regular file."""


class MasterKeyMissing(KeyCustodyError):
    """No master key exists where one is required."""


class MasterKeyCorrupt(KeyCustodyError):
    """The master key file has the wrong size, magic or version."""


class KeyStoreCorrupt(KeyCustodyError):
    """The sealed key store file is not well-formed."""


class UnsealError(KeyCustodyError):
    """A sealed secret did not authenticate: wrong master, or a tampered or moved blob."""


class KeyNotFound(KeyCustodyError, LookupError):
    """The store holds no secret for this session."""


class KeyStoreUnusable(KeyCustodyError):
    """The store was closed, or a rotation failed midway and it must be reopened."""
