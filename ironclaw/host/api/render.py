"""Domain objects as the API's JSON (the shapes :mod:`.schemas` documents)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from ironclaw.contract.gateway import MAX_CHANGE_BYTES
from ironclaw.contract.jsonvalue import parse_json
from ironclaw.host.audit import AuditEntry
from ironclaw.host.channels.local import TranscriptEntry
from ironclaw.host.gateway.messages import access_change_id
from ironclaw.host.questions import Question
from ironclaw.host.registry import (
    AccessRequest,
    AgentGroup,
    MessagingGroup,
    RegistryDestination,
    Session,
    Wiring,
)
from ironclaw.host.store.changes import StoredChange
from ironclaw.runtime import Envelope

JSON = dict[str, Any]


def change_with_approvals(stored: StoredChange, approvals: list[str]) -> JSON:
    """One change as ``GET /v1/changes/{id}`` shows it: with who approved it so far
    under the two-person rule (empty unless it waits for a second approver)."""
    return {**change(stored), "approvals": approvals}


def change(stored: StoredChange) -> JSON:
    c = stored.change
    decision = stored.decision
    diff = c.diff()
    return {
        "id": c.id, "kind": c.kind.value, "agent_group": c.agent_group,
        "status": stored.status.value, "requested_by": c.requested_by, "reason": c.reason,
        "created_at": c.created_at, "expires_at": c.expires_at,
        "before": parse_json(c.before, max_bytes=MAX_CHANGE_BYTES),
        "after": parse_json(c.after, max_bytes=MAX_CHANGE_BYTES),
        "diff": [{"path": d.path, "op": d.op, "before": d.before, "after": d.after}
                 for d in diff],
        "diff_lines": [d.render() for d in diff],
        "decision": None if decision is None else {
            "outcome": decision.outcome.value, "decided_by": decision.decided_by,
            "decided_at": decision.decided_at, "reason": decision.reason},
        "applied_at": stored.applied_at,
    }


def audit_entry(entry: AuditEntry) -> JSON:
    return entry.to_json()


def transcript_entry(entry: TranscriptEntry) -> JSON:
    return {"index": entry.index, "role": entry.role, "sender": entry.sender,
            "text": entry.text, "at": entry.at, "message_id": entry.platform_message_id,
            "thread_id": entry.thread_id}


def session(s: Session, live: bool, heartbeat_at: int | None = None) -> JSON:
    """``heartbeat_at``: the live sandbox's last heartbeat (µs), None when not live."""
    return {"id": s.id, "agent_group_id": s.agent_group_id,
            "messaging_group_id": s.messaging_group_id, "thread_id": s.thread_id,
            "mode": s.mode.value, "status": s.status.value,
            "container_status": s.container_status.value, "created_at": s.created_at,
            "last_active": s.last_active, "live": live, "heartbeat_at": heartbeat_at}


def agent_group(g: AgentGroup) -> JSON:
    return {"id": g.id, "name": g.name, "folder": g.folder, "provider": g.provider,
            "model": g.model, "persona": {"identity": g.persona.identity,
                                          "soul": g.persona.soul,
                                          "instructions": g.persona.instructions},
            "enabled_tools": list(g.enabled_tools), "created_at": g.created_at,
            "updated_at": g.updated_at}


def messaging_group(m: MessagingGroup) -> JSON:
    return {"id": m.id, "channel": m.channel, "platform_id": m.platform_id,
            "instance": m.instance, "unknown_sender_policy": m.unknown_sender_policy.value,
            "name": m.name, "created_at": m.created_at}


def wiring(w: Wiring) -> JSON:
    return {"id": w.id, "messaging_group_id": w.messaging_group_id,
            "agent_group_id": w.agent_group_id, "engage_mode": w.engage_mode.value,
            "pattern": w.pattern, "sender_scope": w.sender_scope.value,
            "ignored_policy": w.ignored_policy.value, "session_mode": w.session_mode.value,
            "priority": w.priority}


def destination(d: RegistryDestination) -> JSON:
    return attrs.asdict(d)


def question(q: Question) -> JSON:
    return {"id": q.id, "session_id": q.session_id, "agent_group_id": q.agent_group_id,
            "question": q.question, "options": list(q.options),
            "allow_freeform": q.allow_freeform, "status": q.status.value,
            "asked_at": q.asked_at, "answer": q.answer, "answered_by": q.answered_by,
            "answered_at": q.answered_at}


def access_request(r: AccessRequest) -> JSON:
    return {"id": r.id, "messaging_group_id": r.messaging_group_id, "user_id": r.user_id,
            "status": r.status.value, "requested_at": r.requested_at,
            "decided_by": r.decided_by, "decided_at": r.decided_at,
            "change_id": access_change_id(r.id)}


# Events on the stream: ``{seq, type, at, event: {...}}`` with ``at`` in microseconds.

def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if attrs.has(type(value)):
        return event_fields(value)
    return str(value)


def event_fields(event: object) -> JSON:
    kind: Any = type(event)
    if attrs.has(kind):
        return {f.name: _plain(getattr(event, f.name)) for f in attrs.fields(kind)}
    return {}


def envelope(env: Envelope) -> JSON:
    return {"seq": env.seq, "type": env.type, "at": round(env.timestamp * 1_000_000),
            "event": event_fields(env.event)}


def stream_note(kind: str, at_s: float, **fields: object) -> JSON:
    """A frame the stream itself adds (``stream.ready``, ``stream.lagged``); no seq."""
    return {"seq": None, "type": f"stream.{kind}", "at": round(at_s * 1_000_000),
            "event": fields}
