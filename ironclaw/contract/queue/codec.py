"""Raw stored tuples to typed rows, and typed rows to insert parameters.

Readers select in the column orders of ``schema.py`` and hand each tuple here. The
builders raise ``RowInvalid``; ``validate_row`` turns that into a RowRejection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import rows as r
from ..enums import AckStatus, InboundStatus, MessageKind
from ..ids import MessageId


def inbound_message(raw: Sequence[Any]) -> r.InboundMessage:
    (id_, seq, kind, ts, status, process_after, recurrence, series_id, tries, engages,
     platform_id, channel_type, thread_id, content, source_session_id, on_wake,
     *_rest) = raw
    return r.InboundMessage(
        id=_mid(id_),
        seq=r.checked_seq(seq, parity=0),
        kind=r.enum_value(kind, MessageKind, field="kind"),
        timestamp=_ts(ts, "timestamp"),
        status=r.enum_value(status, InboundStatus, field="status"),
        content=r.required_text(content, field="content", max_bytes=r.MAX_CONTENT_BYTES),
        engages=r.flag(engages, field="engages"),
        process_after=r.timestamp(process_after, field="process_after", nullable=True),
        recurrence=r.text(recurrence, field="recurrence", max_bytes=r.MAX_RECURRENCE_BYTES,
                          nullable=True),
        series_id=r.text(series_id, field="series_id", nullable=True),
        tries=_int(tries, "tries"),
        platform_id=r.text(platform_id, field="platform_id", nullable=True),
        channel_type=r.text(channel_type, field="channel_type", nullable=True),
        thread_id=r.text(thread_id, field="thread_id", nullable=True),
        source_session_id=r.text(source_session_id, field="source_session_id", nullable=True),
        on_wake=r.flag(on_wake, field="on_wake"),
    )


def outbound_message(raw: Sequence[Any]) -> r.OutboundMessage:
    """The last column is ``octet_length(content)``: the select withholds oversized
    content (NULL) so it is never decoded, and we report its size instead."""
    (id_, seq, in_reply_to, ts, deliver_after, recurrence, kind, platform_id, channel_type,
     thread_id, destination, content, content_bytes) = raw
    if content is None and isinstance(content_bytes, int) and content_bytes > 0:
        raise r.RowInvalid(
            f"content: {content_bytes} bytes exceeds the {r.MAX_CONTENT_BYTES}-byte cap")
    return r.OutboundMessage(
        id=_mid(id_),
        seq=r.checked_seq(seq, parity=1),
        kind=r.enum_value(kind, MessageKind, field="kind"),
        timestamp=_ts(ts, "timestamp"),
        content=r.required_text(content, field="content", max_bytes=r.MAX_CONTENT_BYTES),
        in_reply_to=r.message_id(in_reply_to, field="in_reply_to", nullable=True),
        deliver_after=r.timestamp(deliver_after, field="deliver_after", nullable=True),
        recurrence=r.text(recurrence, field="recurrence", max_bytes=r.MAX_RECURRENCE_BYTES,
                          nullable=True),
        platform_id=r.text(platform_id, field="platform_id", nullable=True),
        channel_type=r.text(channel_type, field="channel_type", nullable=True),
        thread_id=r.text(thread_id, field="thread_id", nullable=True),
        destination=r.text(destination, field="destination", nullable=True),
    )


def processing_ack(raw: Sequence[Any]) -> r.ProcessingAck:
    message_id, status, changed = raw
    return r.ProcessingAck(
        message_id=_mid(message_id),
        status=r.enum_value(status, AckStatus, field="status"),
        status_changed=_ts(changed, "status_changed"),
    )


def destination(raw: Sequence[Any]) -> r.Destination:
    name, display_name, type_, channel_type, platform_id, agent_group_id = raw
    return r.Destination(
        name=r.required_text(name, field="name"),
        type=r.required_text(type_, field="type"),
        display_name=r.text(display_name, field="display_name", nullable=True),
        channel_type=r.text(channel_type, field="channel_type", nullable=True),
        platform_id=r.text(platform_id, field="platform_id", nullable=True),
        agent_group_id=r.text(agent_group_id, field="agent_group_id", nullable=True),
    )


def session_routing(raw: Sequence[Any]) -> r.SessionRouting:
    channel_type, platform_id, thread_id = raw
    return r.SessionRouting(
        channel_type=r.text(channel_type, field="channel_type", nullable=True),
        platform_id=r.text(platform_id, field="platform_id", nullable=True),
        thread_id=r.text(thread_id, field="thread_id", nullable=True),
    )


def container_state(raw: Sequence[Any]) -> r.ContainerState:
    current_tool, timeout_ms, started_at, heartbeat_at, updated_at = raw
    return r.ContainerState(
        current_tool=r.text(current_tool, field="current_tool", nullable=True),
        tool_declared_timeout_ms=r.integer(timeout_ms, field="tool_declared_timeout_ms",
                                           nullable=True, minimum=0),
        tool_started_at=r.timestamp(started_at, field="tool_started_at", nullable=True),
        heartbeat_at=_ts(heartbeat_at, "heartbeat_at"),
        updated_at=_ts(updated_at, "updated_at"),
    )


def check_new_inbound(msg: r.NewInboundMessage) -> None:
    """Writers validate before writing: the same caps the reader enforces, so an
    honest writer learns of a bad row at once instead of its peer rejecting it."""
    _check_text(msg.content, "content", r.MAX_CONTENT_BYTES)
    for name in ("platform_id", "channel_type", "thread_id", "series_id",
                 "source_session_id"):
        _check_text(getattr(msg, name), name, r.MAX_NAME_BYTES, nullable=True)
    _check_text(msg.recurrence, "recurrence", r.MAX_RECURRENCE_BYTES, nullable=True)
    r.timestamp(msg.process_after, field="process_after", nullable=True)
    MessageKind(msg.kind)


def check_new_outbound(msg: r.NewOutboundMessage) -> None:
    _check_text(msg.content, "content", r.MAX_CONTENT_BYTES)
    for name in ("platform_id", "channel_type", "thread_id", "destination"):
        _check_text(getattr(msg, name), name, r.MAX_NAME_BYTES, nullable=True)
    _check_text(msg.recurrence, "recurrence", r.MAX_RECURRENCE_BYTES, nullable=True)
    r.timestamp(msg.deliver_after, field="deliver_after", nullable=True)
    MessageKind(msg.kind)


def _check_text(value: object, field: str, cap: int, *, nullable: bool = False) -> None:
    if value is not None and not isinstance(value, str):
        raise r.RowInvalid(f"{field}: expected text")
    r.text(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value,
           field=field, max_bytes=cap, nullable=nullable)


def _mid(value: object) -> MessageId:
    result = r.message_id(value, field="id")
    assert result is not None
    return result


def _ts(value: object, field: str) -> int:
    result = r.timestamp(value, field=field)
    assert result is not None
    return result


def _int(value: object, field: str) -> int:
    result = r.integer(value, field=field, minimum=0)
    assert result is not None
    return result
