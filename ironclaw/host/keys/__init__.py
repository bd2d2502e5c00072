"""Host key custody: the master key, purpose sub-keys, sealed per-session secrets.

- ``master``: where the 32-byte master lives (``MasterKeySource``; a 0600 file by default).
- ``subkeys``: ``HMAC-SHA256(master, purpose)`` keys for each documented ``Purpose``.
- ``sealing`` and ``store``: each session's random queue secret, sealed with AES-256-GCM
  under a sub-key of the master and bound to the session id, persisted atomically,
  re-wrapped crash-safely when the master rotates.
- ``handoff``: the read-only key file a sandbox receives.
"""

from ironclaw.host.keys.errors import (
    KeyCustodyError,
    KeyFilePermissionError,
    KeyNotFound,
    KeyStoreCorrupt,
    KeyStoreUnusable,
    MasterKeyCorrupt,
    MasterKeyMissing,
    MasterKeyPermissionError,
    SessionKeyDirUnsafe,
    UnsealError,
)
from ironclaw.host.keys.handoff import (
    ensure_session_key_dir,
    render_session_key_file,
    split_queue_keys,
    write_session_key_file,
)
from ironclaw.host.keys.master import FileMasterKeySource, MasterKeySource
from ironclaw.host.keys.store import DEFAULT_SESSION_SECRET_BYTES, KeyStore
from ironclaw.host.keys.subkeys import Purpose, derive_subkey, master_fingerprint

__all__ = [
    "DEFAULT_SESSION_SECRET_BYTES",
    "FileMasterKeySource",
    "KeyCustodyError",
    "KeyFilePermissionError",
    "KeyNotFound",
    "KeyStore",
    "KeyStoreCorrupt",
    "KeyStoreUnusable",
    "MasterKeyCorrupt",
    "MasterKeyMissing",
    "MasterKeyPermissionError",
    "MasterKeySource",
    "Purpose",
    "SessionKeyDirUnsafe",
    "UnsealError",
    "derive_subkey",
    "ensure_session_key_dir",
    "master_fingerprint",
    "render_session_key_file",
    "split_queue_keys",
    "write_session_key_file",
]
