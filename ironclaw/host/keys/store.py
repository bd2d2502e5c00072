"""The sealed key store: per-session secrets, sealed under a master sub-key.

On disk, ``<state>/keys/`` (0700) holds ``sealed-keys.json`` (0600)::

    {"format": "ironclaw-sealed-keys", "version": 1,
     "master_fingerprint": "<32 hex>",
     "sessions": {"ses_<hex>": "<base64 of nonce || ciphertext || tag>", ...}}

The fingerprint names the master that sealed every blob; it is how ``open``
tells which master rules after a crash in the middle of a rotation.

In memory the store keeps the master, its wrap sub-key and the sealed blobs,
never an unsealed secret: each call unseals afresh (AES-GCM over 64 bytes costs
microseconds), so the store holds no plaintext a heap dump could show. Python
cannot wipe ``bytes``, so callers should drop what they are given once used.

Every method may be called from ``trio.to_thread`` workers: one lock serialises
them, and disk is written before memory changes, so a failed write leaves the
in-memory view matching a state that is on disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from ironclaw.contract.ids import InvalidId, SessionId, validate_session_id
from ironclaw.host import private_files as _fs
from ironclaw.host.keys.errors import (
    KeyCustodyError,
    KeyFilePermissionError,
    KeyNotFound,
    KeyStoreCorrupt,
    KeyStoreUnusable,
    MasterKeyMissing,
    UnsealError,
)
from ironclaw.host.keys.master import MasterKeySource
from ironclaw.host.keys.sealing import (
    seal_root_secret,
    seal_session_secret,
    unseal_root_secret,
    unseal_session_secret,
)
from ironclaw.host.keys.subkeys import (
    CUSTODY_ONLY_PURPOSES,
    Purpose,
    derive_subkey,
    master_fingerprint,
)

KEYS_DIR_NAME = "keys"
STORE_FILE_NAME = "sealed-keys.json"
STORE_FORMAT = "ironclaw-sealed-keys"
STORE_VERSION = 1
STORE_FILE_MODE = 0o600
# Two 32-byte SQLCipher raw keys: the inbound queue file's, then the outbound's.
DEFAULT_SESSION_SECRET_BYTES = 64
MIN_SESSION_SECRET_BYTES = 16
MAX_SESSION_SECRET_BYTES = 1024
# Far above any real store (a session costs ~150 bytes); bounds a runaway read.
_MAX_STORE_BYTES = 256 * 1024 * 1024
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")

Blobs = dict[SessionId, bytes]


ROOT_SECRET_BYTES = 32


def _encode_store(fingerprint: str, root: bytes, blobs: Blobs, rotating: Blobs) -> bytes:
    document: dict[str, Any] = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "master_fingerprint": fingerprint,
        "root": base64.b64encode(root).decode("ascii"),
        "sessions": {sid: base64.b64encode(blob).decode("ascii") for sid, blob in blobs.items()},
    }
    if rotating:  # absent unless a session key rotation is under way
        document["rotating"] = {sid: base64.b64encode(blob).decode("ascii")
                                for sid, blob in rotating.items()}
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("ascii")


def _decode_blobs(path: Path, sessions: object) -> Blobs:
    if not isinstance(sessions, dict):
        raise KeyStoreCorrupt(f"{path} has a malformed session map")
    blobs: Blobs = {}
    for raw_id, encoded in sessions.items():
        try:
            session_id = validate_session_id(raw_id)
            if not isinstance(encoded, str):
                raise ValueError(encoded)
            blobs[session_id] = base64.b64decode(encoded, validate=True)
        except (InvalidId, ValueError, binascii.Error):
            raise KeyStoreCorrupt(f"{path} has a malformed entry {raw_id!r:.80}") from None
    return blobs


def _decode_store(path: Path, data: bytes) -> tuple[str, bytes, Blobs, Blobs]:
    if len(data) > _MAX_STORE_BYTES:
        raise KeyStoreCorrupt(f"{path} is larger than {_MAX_STORE_BYTES} bytes")
    try:
        document: Any = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise KeyStoreCorrupt(f"{path} is not JSON") from None
    expected = {"format", "version", "master_fingerprint", "root", "sessions"}
    if not isinstance(document, dict) or not expected <= set(document) <= {*expected,
                                                                           "rotating"}:
        raise KeyStoreCorrupt(f"{path} does not have the sealed key store fields")
    if document["format"] != STORE_FORMAT or document["version"] != STORE_VERSION:
        raise KeyStoreCorrupt(f"{path} is not a version {STORE_VERSION} sealed key store")
    fingerprint = document["master_fingerprint"]
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise KeyStoreCorrupt(f"{path} has a malformed master fingerprint")
    try:
        root = base64.b64decode(document["root"], validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise KeyStoreCorrupt(f"{path} has a malformed root secret") from None
    blobs = _decode_blobs(path, document["sessions"])
    rotating = _decode_blobs(path, document.get("rotating", {}))
    if not set(rotating) <= set(blobs):
        raise KeyStoreCorrupt(f"{path} rotates the key of a session it does not hold")
    return fingerprint, root, blobs, rotating


def _read_store(path: Path) -> tuple[str, bytes, Blobs, Blobs] | None:
    try:
        data = _fs.read_private_file(path, mode=STORE_FILE_MODE, max_size=_MAX_STORE_BYTES,
                                     error=KeyFilePermissionError)
    except FileNotFoundError:
        return None
    return _decode_store(path, data)


def _settle_master(source: MasterKeySource, recorded: str | None, store_path: Path) -> bytes:
    """Pick the master the store was sealed under, finishing or abandoning a rotation.

    Rotation publishes the successor master, then the re-sealed store, then swaps
    the masters; the store's fingerprint therefore says which master is right.
    """
    try:
        current: bytes | None = source.load()
    except MasterKeyMissing:
        current = None
    if recorded is None:
        # Nothing was ever sealed, so a staged successor protects nothing.
        source.discard_next()
        return current if current is not None else source.create()
    if current is not None and master_fingerprint(current) == recorded:
        # Crashed (if at all) before the re-sealed store landed: the old master rules.
        source.discard_next()
        return current
    staged = source.load_next()
    if staged is not None and master_fingerprint(staged) == recorded:
        # Crashed after the re-sealed store landed but before the masters were swapped.
        source.commit_next()
        committed = source.load()
        if committed != staged:
            raise KeyCustodyError("the master changed while finishing a rotation")
        return committed
    if current is None:
        # Never mint a fresh master here: it would silently orphan every sealed secret.
        raise MasterKeyMissing(f"{store_path} exists but its master key ({recorded}) is gone")
    raise UnsealError(
        f"{store_path} was sealed under master {recorded}, "
        f"but the master key is {master_fingerprint(current)}"
    )


def _check_length(length: int) -> None:
    if not MIN_SESSION_SECRET_BYTES <= length <= MAX_SESSION_SECRET_BYTES:
        raise ValueError(
            f"a session secret is {MIN_SESSION_SECRET_BYTES}..{MAX_SESSION_SECRET_BYTES} bytes"
        )


class KeyStore:
    """Per-session secrets, sealed at rest under the master's wrap sub-key.

    Make one with ``KeyStore.open``; the constructor trusts its arguments.
    """

    def __init__(self, *, path: Path, source: MasterKeySource, master: bytes, root: bytes,
                 blobs: Blobs, rotating: Blobs | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._source = source
        self._master = master
        self._wrap_key = derive_subkey(master, Purpose.SESSION_KEY_WRAP)
        self._fingerprint = master_fingerprint(master)
        # Sealed; purpose sub-keys derive from it, so they survive a master rotation.
        self._root = root
        self._blobs = blobs
        # Sessions whose key is being rotated: the successor secret, sealed. The old
        # one stays in ``_blobs`` until both queue files are verified under the new.
        self._rotating: Blobs = rotating or {}
        self._unusable_reason: str | None = None

    @classmethod
    def open(cls, state_dir: os.PathLike[str] | str, source: MasterKeySource) -> KeyStore:
        """Open (or create) the store in ``state_dir``, recovering an interrupted rotation.

        Every sealed secret is unsealed once here, so a wrong master or a tampered
        store fails at start-up, not at some session's first wake.
        """
        state = Path(state_dir)
        keys_dir = state / KEYS_DIR_NAME
        _fs.ensure_private_dir(state, error=KeyFilePermissionError)
        _fs.ensure_private_dir(keys_dir, error=KeyFilePermissionError)
        path = keys_dir / STORE_FILE_NAME
        _fs.remove_stale_temps(keys_dir, STORE_FILE_NAME)
        stored = _read_store(path)
        master = _settle_master(source, stored[0] if stored else None, path)
        blobs: Blobs = stored[2] if stored else {}
        if stored is None:
            root = seal_root_secret(derive_subkey(master, Purpose.SESSION_KEY_WRAP),
                                    secrets.token_bytes(ROOT_SECRET_BYTES))
        else:
            root = stored[1]
        store = cls(path=path, source=source, master=master, root=root, blobs=blobs,
                    rotating=stored[3] if stored else {})
        if stored is None:
            # Record the fingerprint now, so a later missing master is detected, not replaced.
            store._persist(store._fingerprint, {})
        unseal_root_secret(store._wrap_key, root)
        for session_id, blob in [*blobs.items(), *store._rotating.items()]:
            unseal_session_secret(store._wrap_key, session_id, blob)
        return store

    @classmethod
    def open_read_only(cls, state_dir: os.PathLike[str] | str,
                       source: MasterKeySource) -> KeyStore:
        """A view for a second process beside the running daemon (a backup). It reads
        the store and the master as they are, and never creates, repairs or finishes a
        rotation (that is the daemon's); while one is under way it refuses."""
        path = Path(state_dir) / KEYS_DIR_NAME / STORE_FILE_NAME
        stored = _read_store(path)
        if stored is None:
            raise KeyCustodyError(f"{path} does not exist")
        master = source.load()
        if master_fingerprint(master) != stored[0]:
            raise KeyCustodyError(f"{path} is sealed under master {stored[0]}, not the "
                                  "current master key (a rotation under way?)")
        store = cls(path=path, source=source, master=master, root=stored[1],
                    blobs=stored[2], rotating=stored[3])
        unseal_root_secret(store._wrap_key, stored[1])
        return store

    @property
    def path(self) -> Path:
        return self._path

    @property
    def master_fingerprint(self) -> str:
        with self._lock:
            return self._fingerprint

    def _check_usable(self) -> None:
        if self._unusable_reason is not None:
            raise KeyStoreUnusable(self._unusable_reason)

    def subkey(self, purpose: Purpose | str) -> bytes:
        """The sub-key for ``purpose``: HMAC of the sealed root secret, not of the master,
        so rotating the master leaves host.db, the audit chain and token hashes as
        they are."""
        label = Purpose(purpose)
        if label in CUSTODY_ONLY_PURPOSES:
            raise ValueError(f"{label.value} is reserved to key custody")
        with self._lock:
            self._check_usable()
            return derive_subkey(unseal_root_secret(self._wrap_key, self._root), label)

    def ensure_session(self, session_id: str, length: int = DEFAULT_SESSION_SECRET_BYTES) -> bytes:
        """The session's secret, generated, sealed and persisted on first call."""
        sid = validate_session_id(session_id)
        _check_length(length)
        with self._lock:
            self._check_usable()
            existing = self._blobs.get(sid)
            if existing is not None:
                secret = unseal_session_secret(self._wrap_key, sid, existing)
                if len(secret) != length:
                    raise ValueError(f"{sid} already has a {len(secret)}-byte secret")
                return secret
            secret = secrets.token_bytes(length)
            blobs = {**self._blobs, sid: seal_session_secret(self._wrap_key, sid, secret)}
            self._persist(self._fingerprint, blobs)
            self._blobs = blobs
            return secret

    def get_session(self, session_id: str) -> bytes:
        sid = validate_session_id(session_id)
        with self._lock:
            self._check_usable()
            blob = self._blobs.get(sid)
            if blob is None:
                raise KeyNotFound(f"no secret for {sid}")
            return unseal_session_secret(self._wrap_key, sid, blob)

    def delete_session(self, session_id: str) -> bool:
        """Forget the session's secret for good; ``False`` if there was none."""
        sid = validate_session_id(session_id)
        with self._lock:
            self._check_usable()
            if sid not in self._blobs:
                return False
            blobs = {other: blob for other, blob in self._blobs.items() if other != sid}
            rotating = {other: blob for other, blob in self._rotating.items() if other != sid}
            self._persist(self._fingerprint, blobs, rotating=rotating)
            self._blobs, self._rotating = blobs, rotating
            return True

    def session_ids(self) -> frozenset[SessionId]:
        with self._lock:
            self._check_usable()
            return frozenset(self._blobs)

    def rotate_master(self) -> str:
        """Replace the master and re-seal every secret under it; returns the new fingerprint.

        Three durable steps: stage the successor master, publish the store re-sealed
        under it (recording its fingerprint), swap the masters. A crash between any
        two leaves a pair ``open`` resolves. The root secret is re-sealed with the
        rest, so purpose sub-keys do not change.
        """
        with self._lock:
            self._check_usable()
            try:
                new_master = self._source.stage_next()
                new_wrap_key = derive_subkey(new_master, Purpose.SESSION_KEY_WRAP)
                resealed = {
                    sid: seal_session_secret(
                        new_wrap_key, sid, unseal_session_secret(self._wrap_key, sid, blob)
                    )
                    for sid, blob in self._blobs.items()
                }
                rotating = {
                    sid: seal_session_secret(
                        new_wrap_key, sid, unseal_session_secret(self._wrap_key, sid, blob)
                    )
                    for sid, blob in self._rotating.items()
                }
                new_root = seal_root_secret(
                    new_wrap_key, unseal_root_secret(self._wrap_key, self._root))
                new_fingerprint = master_fingerprint(new_master)
                self._persist(new_fingerprint, resealed, new_root, rotating=rotating)
                self._source.commit_next()
            except BaseException:
                # Disk may now be at any step; only open's reconciliation can tell which
                # master rules, so refuse to seal anything under a guess.
                self._unusable_reason = "a master rotation failed midway; reopen the store"
                raise
            self._master = new_master
            self._wrap_key = new_wrap_key
            self._fingerprint = new_fingerprint
            self._root = new_root
            self._blobs = resealed
            self._rotating = rotating
            return new_fingerprint

    def stage_session_rotation(self, session_id: str) -> tuple[bytes, bytes]:
        """Keep a successor secret for the session beside its current one, durably;
        returns (current, successor). Staging again returns the same successor, so a
        rotation cut short is finished with the key it began with."""
        sid = validate_session_id(session_id)
        with self._lock:
            self._check_usable()
            current = self._blobs.get(sid)
            if current is None:
                raise KeyNotFound(f"no secret for {sid}")
            old = unseal_session_secret(self._wrap_key, sid, current)
            staged = self._rotating.get(sid)
            if staged is not None:
                return old, unseal_session_secret(self._wrap_key, sid, staged)
            new = secrets.token_bytes(len(old))
            rotating = {**self._rotating, sid: seal_session_secret(self._wrap_key, sid, new)}
            self._persist(self._fingerprint, self._blobs, rotating=rotating)
            self._rotating = rotating
            return old, new

    def staged_rotations(self) -> dict[str, tuple[bytes, bytes]]:
        """Every rotation under way: session -> (current, successor)."""
        with self._lock:
            self._check_usable()
            return {sid: (unseal_session_secret(self._wrap_key, sid, self._blobs[sid]),
                          unseal_session_secret(self._wrap_key, sid, blob))
                    for sid, blob in self._rotating.items()}

    def finish_session_rotation(self, session_id: str, *, commit: bool) -> None:
        """The successor becomes the session's secret (``commit``) or is dropped."""
        sid = validate_session_id(session_id)
        with self._lock:
            self._check_usable()
            staged = self._rotating.get(sid)
            if staged is None:
                return
            blobs = {**self._blobs, sid: staged} if commit else self._blobs
            rotating = {other: b for other, b in self._rotating.items() if other != sid}
            self._persist(self._fingerprint, blobs, rotating=rotating)
            self._blobs, self._rotating = blobs, rotating

    def _persist(self, fingerprint: str, blobs: Blobs, root: bytes | None = None, *,
                 rotating: Blobs | None = None) -> None:
        _fs.atomic_replace(self._path, _encode_store(
            fingerprint, root or self._root, blobs,
            self._rotating if rotating is None else rotating), mode=STORE_FILE_MODE)

    def close(self) -> None:
        with self._lock:
            self._unusable_reason = "the key store is closed"
            self._master = b""
            self._wrap_key = b""
            self._blobs = {}
            self._rotating = {}

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KeyStore(path={str(self._path)!r}, master_fingerprint={self._fingerprint!r})"
