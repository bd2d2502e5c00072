"""Row shapes of both queues, and the validation that turns raw stored values into
them.

Everything read from a queue file is validated column by column before it becomes a
row object: the outbound file is written by a sandbox we assume compromised, so a
value may be of any SQLite type, any length, invalid UTF-8 or carry NUL bytes. A bad
row becomes a ``RowRejection`` (typed, with the reason) and never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from .clock import is_plausible
from .enums import AckStatus, InboundStatus, MessageKind
from .ids import InvalidId, MessageId, validate_message_id

# Caps. Content is chat text or a system-action envelope; a file sent as a message
# is capped separately by the tool. Names are labels, not documents.
MAX_CONTENT_BYTES = 256 * 1024
MAX_NAME_BYTES = 256
MAX_STATE_VALUE_BYTES = 1024 * 1024
MAX_RECURRENCE_BYTES = 128


@attrs.frozen
class RowRejection:
    """A stored row that failed validation. ``seq`` and ``row_id`` are given when they
    themselves were readable, so the host can skip past it and report it."""

    table: str
    seq: int | None
    row_id: str | None
    reason: str


@attrs.frozen
class InboundMessage:
    id: MessageId
    seq: int
    kind: MessageKind
    timestamp: int
    status: InboundStatus
    content: str
    engages: bool = True  # False: accumulated context, does not wake the agent
    process_after: int | None = None
    recurrence: str | None = None
    series_id: str | None = None
    tries: int = 0
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    source_session_id: str | None = None
    on_wake: bool = False


@attrs.frozen
class NewInboundMessage:
    """What the host asks to enqueue; the writer mints seq, timestamp and status."""

    id: MessageId
    kind: MessageKind
    content: str
    engages: bool = True
    process_after: int | None = None
    recurrence: str | None = None
    series_id: str | None = None
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    source_session_id: str | None = None
    on_wake: bool = False


@attrs.frozen
class OutboundMessage:
    id: MessageId
    seq: int
    kind: MessageKind
    timestamp: int
    content: str
    in_reply_to: MessageId | None = None
    deliver_after: int | None = None
    recurrence: str | None = None
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    destination: str | None = None  # a named destination; None means the origin chat


@attrs.frozen
class NewOutboundMessage:
    id: MessageId
    kind: MessageKind
    content: str
    in_reply_to: MessageId | None = None
    deliver_after: int | None = None
    recurrence: str | None = None
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    destination: str | None = None


@attrs.frozen
class ProcessingAck:
    message_id: MessageId
    status: AckStatus
    status_changed: int


@attrs.frozen
class Destination:
    name: str
    type: str
    display_name: str | None = None
    channel_type: str | None = None
    platform_id: str | None = None
    agent_group_id: str | None = None


@attrs.frozen
class SessionRouting:
    channel_type: str | None
    platform_id: str | None
    thread_id: str | None


@attrs.frozen
class ContainerState:
    """What the agent is doing right now, so the host can tell busy from stuck."""

    current_tool: str | None
    tool_declared_timeout_ms: int | None
    tool_started_at: int | None
    heartbeat_at: int
    updated_at: int


class RowInvalid(ValueError):
    """Raised inside validation; converted to a RowRejection at the boundary."""


def text(value: object, *, field: str, max_bytes: int = MAX_NAME_BYTES,
         nullable: bool = False) -> str | None:
    """Decode a stored TEXT value strictly. Readers fetch text as bytes so that
    invalid UTF-8 reaches us as data instead of failing the whole query."""
    if value is None:
        if nullable:
            return None
        raise RowInvalid(f"{field}: missing")
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise RowInvalid(f"{field}: expected text, got {type(value).__name__}")
    if len(raw) > max_bytes:
        raise RowInvalid(f"{field}: {len(raw)} bytes exceeds the {max_bytes}-byte cap")
    if b"\x00" in raw:
        raise RowInvalid(f"{field}: contains a NUL byte")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowInvalid(f"{field}: invalid UTF-8 at byte {exc.start}") from None


def required_text(value: object, *, field: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    result = text(value, field=field, max_bytes=max_bytes)
    assert result is not None
    return result


def integer(value: object, *, field: str, nullable: bool = False,
            minimum: int | None = None) -> int | None:
    if value is None:
        if nullable:
            return None
        raise RowInvalid(f"{field}: missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise RowInvalid(f"{field}: expected an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise RowInvalid(f"{field}: {value} is below {minimum}")
    return value


def timestamp(value: object, *, field: str, nullable: bool = False) -> int | None:
    result = integer(value, field=field, nullable=nullable)
    if result is not None and not is_plausible(result):
        raise RowInvalid(f"{field}: {result} is not a plausible microsecond timestamp")
    return result


def flag(value: object, *, field: str) -> bool:
    if value not in (0, 1) or isinstance(value, bool):
        raise RowInvalid(f"{field}: expected 0 or 1")
    return bool(value)


E = TypeVar("E")


def enum_value(value: object, enum_type: Callable[[str], E], *, field: str) -> E:
    raw = required_text(value, field=field, max_bytes=64)
    try:
        return enum_type(raw)
    except ValueError:
        raise RowInvalid(f"{field}: unknown value {raw!r}") from None


def message_id(value: object, *, field: str, nullable: bool = False) -> MessageId | None:
    raw = text(value, field=field, max_bytes=128, nullable=nullable)
    if raw is None:
        return None
    try:
        return validate_message_id(raw)
    except InvalidId:
        raise RowInvalid(f"{field}: not a valid message id") from None


def checked_seq(value: object, *, parity: int) -> int:
    seq = integer(value, field="seq", minimum=1)
    assert seq is not None
    if seq % 2 != parity:
        raise RowInvalid(f"seq: {seq} has the wrong parity for this queue")
    return seq


T = TypeVar("T")


def validate_row(table: str, raw: Sequence[Any], build: Callable[[Sequence[Any]], T],
                 *, seq_index: int | None, id_index: int | None) -> T | RowRejection:
    """Run ``build`` over a raw row; any failure becomes a RowRejection."""
    try:
        return build(raw)
    except (RowInvalid, ValueError, TypeError, IndexError) as exc:
        seq = raw[seq_index] if seq_index is not None and seq_index < len(raw) else None
        row_id = raw[id_index] if id_index is not None and id_index < len(raw) else None
        safe_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        safe_id: str | None = None
        if isinstance(row_id, bytes | str):
            try:
                safe_id = validate_message_id(
                    row_id.decode() if isinstance(row_id, bytes) else row_id
                )
            except (InvalidId, UnicodeDecodeError):
                safe_id = None
        return RowRejection(table, safe_seq, safe_id, str(exc)[:300])
