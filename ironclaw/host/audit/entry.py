"""The audit entry and the signed head: shapes, the ids-and-counts rule, and the MACs.

An entry is one line of canonical JSON (sorted keys, no whitespace, UTF-8):

    {"at":<µs>,"fields":{...},"kind":"a.b","mac":"<64 hex>","prev":"<64 hex>","seq":<n>}

``mac = HMAC-SHA256(key, canonical_json({"at","fields","kind","prev","seq"}))``, and
``prev`` is the previous entry's ``mac`` (``GENESIS_MAC`` for seq 1), so editing,
dropping or moving any entry breaks a MAC or a link. A line must be byte-identical to
the canonical encoding of what it parses to, so no re-spelling of an entry (hex case,
escapes, spacing) passes either.

The head (``head.json``) is ``{"head_mac","mac","seq"}`` with
``head_mac = HMAC-SHA256(key, "head|<seq>|<mac>")``. The ``head|`` prefix can never begin
canonical JSON, so a head MAC can never be passed off as an entry MAC or the reverse.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import types
from collections.abc import Mapping
from typing import Any

import attrs

from ironclaw.contract.jsonvalue import JSONRejected, canonical_json, parse_json

from .errors import AuditFieldRejected

KEY_BYTES = 32
GENESIS_MAC = "0" * 64
MAX_FIELDS = 32
MAX_STR_CHARS = 256
MAX_KIND_CHARS = 64
# Worst case: 32 fields of 256 four-byte characters, plus names and punctuation.
MAX_LINE_BYTES = 64 * 1024
MAX_HEAD_BYTES = 1024
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

FieldValue = str | int | bool | None

_FIELD_KEY = re.compile(r"[a-z_]{1,40}")
_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Control characters (C0, DEL, C1), line and paragraph separators, bidi overrides and
# isolates, lone surrogates. Ids never hold them, and refusing them means printing an
# entry (``ironctl audit tail``) can never drive a terminal. A fixed list, not a
# Unicode category, so the rule does not move with the Python version.
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                              "\ud800-\udfff]")
_ENTRY_KEYS = frozenset({"seq", "at", "kind", "fields", "prev", "mac"})
_HEAD_KEYS = frozenset({"seq", "mac", "head_mac"})


class UnparsableEntry(ValueError):
    """A line that is not a well-formed entry (its MAC is a separate question)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HeadInvalid(ValueError):
    """head.json is malformed or its MAC does not hold under this key."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or len(kind) > MAX_KIND_CHARS or not _KIND.fullmatch(kind):
        raise AuditFieldRejected(
            None, f"must be dotted lower-case words (a.b), at most {MAX_KIND_CHARS} chars")
    return kind


def check_fields(fields: Mapping[Any, object]) -> dict[str, FieldValue]:
    """The ids-and-counts rule. Only short printable strings, 64-bit ints, bools and
    None, under at most 32 ``[a-z_]{1,40}`` names; a dict, list, float, bytes or long
    text is refused, so message content cannot slip into the log by accident."""
    if len(fields) > MAX_FIELDS:
        raise AuditFieldRejected(None, f"{len(fields)} fields, at most {MAX_FIELDS}")
    checked: dict[str, FieldValue] = {}
    for key, value in fields.items():
        if not isinstance(key, str) or not _FIELD_KEY.fullmatch(key):
            raise AuditFieldRejected(None, "a field name is not [a-z_]{1,40}")
        checked[key] = _check_value(key, value)
    return checked


def _check_value(key: str, value: object) -> FieldValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise AuditFieldRejected(key, "integer outside the signed 64-bit range")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STR_CHARS:
            raise AuditFieldRejected(
                key, f"string of {len(value)} chars; ids are at most {MAX_STR_CHARS}")
        if _FORBIDDEN_CHARS.search(value):
            raise AuditFieldRejected(key, "string holds control or bidi characters")
        return value
    raise AuditFieldRejected(
        key, f"{type(value).__name__} refused: only str, int, bool or None (ids and counts)")


def _freeze(fields: Mapping[str, FieldValue]) -> Mapping[str, FieldValue]:
    return types.MappingProxyType(dict(fields))


@attrs.frozen
class AuditEntry:
    seq: int
    at: int
    kind: str
    fields: Mapping[str, FieldValue] = attrs.field(converter=_freeze, hash=False)
    prev: str
    mac: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind,
                "fields": dict(self.fields), "prev": self.prev, "mac": self.mac}

    def encode(self) -> bytes:
        """The entry's line in the file, newline included."""
        return canonical_json(self.to_json()).encode("utf-8") + b"\n"


@attrs.frozen
class Head:
    seq: int
    mac: str


GENESIS_HEAD = Head(0, GENESIS_MAC)


def _hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def entry_mac(key: bytes, *, seq: int, at: int, kind: str,
              fields: Mapping[str, FieldValue], prev: str) -> str:
    body = {"seq": seq, "at": at, "kind": kind, "fields": dict(fields), "prev": prev}
    return _hmac_hex(key, canonical_json(body).encode("utf-8"))


def seal(key: bytes, *, seq: int, at: int, kind: str, fields: Mapping[str, FieldValue],
         prev: str) -> AuditEntry:
    mac = entry_mac(key, seq=seq, at=at, kind=kind, fields=fields, prev=prev)
    return AuditEntry(seq=seq, at=at, kind=kind, fields=fields, prev=prev, mac=mac)


def mac_ok(key: bytes, entry: AuditEntry) -> bool:
    expected = entry_mac(key, seq=entry.seq, at=entry.at, kind=entry.kind,
                         fields=entry.fields, prev=entry.prev)
    return hmac.compare_digest(expected, entry.mac)


def _is_int(value: object, low: int, high: int = INT_MAX) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _parse_object(line: bytes, limit: int, what: str) -> dict[str, Any]:
    try:
        value = parse_json(line, max_bytes=limit)
    except JSONRejected as exc:
        raise UnparsableEntry(f"{what} is not JSON ({str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise UnparsableEntry(f"{what} is not a JSON object")
    return value


def decode_line(line: bytes) -> AuditEntry:
    """Parse one line (without its newline). Checks shape and canonical form, not the MAC."""
    raw = _parse_object(line, MAX_LINE_BYTES, "line")
    if set(raw) != _ENTRY_KEYS:
        raise UnparsableEntry("wrong set of keys")
    seq, at, kind, fields, prev, mac = (raw[k] for k in
                                        ("seq", "at", "kind", "fields", "prev", "mac"))
    if not _is_int(seq, 1) or not _is_int(at, 0):
        raise UnparsableEntry("seq or at is not a valid integer")
    if not _is_hex64(prev) or not _is_hex64(mac):
        raise UnparsableEntry("prev or mac is not 64 lower-case hex digits")
    if not isinstance(fields, dict):
        raise UnparsableEntry("fields is not an object")
    try:
        entry = AuditEntry(seq=seq, at=at, kind=check_kind(kind),
                           fields=check_fields(fields), prev=prev, mac=mac)
    except AuditFieldRejected as exc:
        raise UnparsableEntry(str(exc)) from None
    if entry.encode() != line + b"\n":
        raise UnparsableEntry("not in canonical form")
    return entry


def head_mac(key: bytes, head: Head) -> str:
    return _hmac_hex(key, f"head|{head.seq}|{head.mac}".encode("ascii"))


def encode_head(key: bytes, head: Head) -> bytes:
    body = {"seq": head.seq, "mac": head.mac, "head_mac": head_mac(key, head)}
    return canonical_json(body).encode("utf-8") + b"\n"


def decode_head(data: bytes, key: bytes) -> Head:
    """Parse head.json and check its MAC; ``HeadInvalid`` names what is wrong."""
    try:
        raw = _parse_object(data.removesuffix(b"\n"), MAX_HEAD_BYTES, "head.json")
    except UnparsableEntry as exc:
        raise HeadInvalid(exc.reason) from None
    if set(raw) != _HEAD_KEYS:
        raise HeadInvalid("head.json has the wrong set of keys")
    seq, mac, signature = raw["seq"], raw["mac"], raw["head_mac"]
    if not _is_int(seq, 0) or not _is_hex64(mac) or not _is_hex64(signature):
        raise HeadInvalid("head.json has a malformed seq, mac or head_mac")
    head = Head(seq, mac)
    if seq == 0 and mac != GENESIS_MAC:
        raise HeadInvalid("head.json at seq 0 must name the genesis value")
    if not hmac.compare_digest(head_mac(key, head), signature):
        raise HeadInvalid("head.json: bad head mac (tampered, or the wrong key)")
    if encode_head(key, head) != data:
        raise HeadInvalid("head.json is not in canonical form")
    return head
