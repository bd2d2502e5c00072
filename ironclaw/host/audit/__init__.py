"""The tamper-evident audit log (docs/design.md, invariant 8).

Every submit, verdict, decision and apply at the gateway, and every gated action (model
call and egress metadata, sandbox launch and kill) is appended here. Files, under
``<state>/audit/`` (directory 0700, files 0600, refused otherwise):

- ``audit.log``: append-only NDJSON, one entry per line, in canonical JSON (sorted keys,
  no whitespace)::

      {"at":<µs>,"fields":{...},"kind":"change.submitted","mac":"<hex>","prev":"<hex>","seq":7}

  ``mac = HMAC-SHA256(key, canonical_json({seq, at, kind, fields, prev}))``; ``prev`` is
  the previous entry's mac, and ``"0" * 64`` (``GENESIS_MAC``) for seq 1. The key is
  ``KeyStore.subkey(Purpose.AUDIT_CHAIN)``, which survives master rotation. Editing,
  deleting, inserting or swapping entries breaks a MAC, a link or the seq run, and
  nobody without the key can mend them.
- ``head.json``: ``{"head_mac","mac","seq"}`` naming the last entry, with
  ``head_mac = HMAC-SHA256(key, "head|<seq>|<mac>")``, replaced atomically (temp file,
  fsync, rename, fsync of the directory) after every append. Verification compares the
  log's end with it, so cutting entries off the tail, which leaves a valid chain, is
  detected too.

**The ids-and-counts rule.** An entry's ``kind`` is dotted lower-case words
(``sandbox.launched``, at most 64 chars). Its fields are at most 32, named
``[a-z_]{1,40}``, and each value is a ``str`` of at most 256 characters with no control,
line-separator or bidi characters, a 64-bit ``int``, a ``bool`` or ``None``. Anything
else (a dict, a list, bytes, a float, long text) raises ``AuditFieldRejected``, whose
message names the field but never echoes the value. So message content, prompts,
payloads and secrets cannot be logged by accident: log ids (session, change, principal),
counts (bytes, tokens, rows) and verdict words, never the thing itself.

**Durability.** ``append`` returns only after the line is fsynced and the head
published. A crash between the two leaves one entry past the head; a crash mid-write
leaves a torn line. Opening repairs exactly those (rolls the head forward, or cuts the
torn bytes), reports them in ``AuditLog.recovered`` and records an ``audit.recovered``
entry; any other disagreement between log and head is refused with ``AuditLogCorrupt``.

**Growth and archiving.** The log is never rotated by the daemon; it grows by roughly
200-400 bytes per entry. To archive, with the daemon stopped: run
``verify_file`` (``ironctl audit verify``) and keep its report; move ``audit.log`` and
``head.json`` together into the archive (they verify only as a pair, under the same
key); start the daemon, which begins a new chain at seq 1; then append, as its first
entry, ``audit.chain_started`` with ``previous_seq``, ``previous_mac`` and
``previous_head_mac`` copied from the archived head, so the new chain names the old one.

**Limits.** A local chain cannot tell a wholesale rollback (an older copy of both files
put back) or the deletion of the whole directory from a fresh start; ship ``export``
to a SIEM, which then holds seqs and MACs the host can no longer take back.
"""

from .entry import (
    GENESIS_MAC,
    MAX_FIELDS,
    MAX_STR_CHARS,
    AuditEntry,
    FieldValue,
    check_fields,
    check_kind,
)
from .errors import (
    AuditError,
    AuditFieldRejected,
    AuditLogCorrupt,
    AuditLogUnavailable,
    AuditPermissionError,
    AuditWriteError,
)
from .files import AuditPaths
from .log import MAX_TAIL, AuditLog, open_audit_log
from .verify import ChainVerifier, VerifyReport, verify_file

__all__ = [
    "GENESIS_MAC",
    "MAX_FIELDS",
    "MAX_STR_CHARS",
    "MAX_TAIL",
    "AuditEntry",
    "AuditError",
    "AuditFieldRejected",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditLogUnavailable",
    "AuditPaths",
    "AuditPermissionError",
    "AuditWriteError",
    "ChainVerifier",
    "FieldValue",
    "VerifyReport",
    "check_fields",
    "check_kind",
    "open_audit_log",
    "verify_file",
]
