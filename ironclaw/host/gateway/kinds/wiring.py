"""``wiring``: ``{"wiring"?, "messaging_group"?, "engage"?, "pattern"?, "sender_scope"?,
"ignored_policy"?, "session_mode"?, "priority"?, "delete"?}``. Without a ``wiring`` id it
patches every wiring of the agent group; with one it patches, creates (naming its
messaging group) or deletes that wiring, which must be the agent group's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ironclaw.contract.enums import (
    ChangeKind,
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
)
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import Wiring
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..payloads import (
    ENTITY_ID,
    PayloadError,
    expect_bool,
    expect_ident,
    expect_object,
    expect_text,
)
from .base import ApplyError, ApplyJob, ChangeContext, ChangeKindSpec, Conn

if TYPE_CHECKING:
    from ..config import GatewayConfig

WIRING_ENUMS: dict[str, Any] = {"engage": EngageMode, "sender_scope": SenderScope,
                                "ignored_policy": IgnoredMessagePolicy,
                                "session_mode": SessionMode}
WIRING_FIELDS = (*WIRING_ENUMS, "pattern", "priority")


@attrs.frozen
class WiringPatch:
    wiring: str | None  # None: every wiring of the agent group
    messaging_group: str | None
    fields: dict[str, str | int]
    delete: bool


def parse_wiring(value: JSONValue) -> WiringPatch:
    obj = expect_object(value, "wiring", ("wiring", "messaging_group", "delete",
                                          *WIRING_FIELDS))
    wiring = expect_ident(obj["wiring"], "wiring id", ENTITY_ID) if "wiring" in obj else None
    group = (expect_ident(obj["messaging_group"], "messaging group", ENTITY_ID)
             if "messaging_group" in obj else None)
    delete = expect_bool(obj.get("delete", False), "delete")
    fields: dict[str, str | int] = {}
    for key, enum in WIRING_ENUMS.items():
        if key in obj:
            if obj[key] not in {m.value for m in enum}:
                raise PayloadError(f"wiring.{key}: invalid {obj[key]!r:.40}")
            fields[key] = obj[key]
    if "pattern" in obj:
        fields["pattern"] = expect_text(obj["pattern"], "wiring.pattern", 1024)
    if "priority" in obj:
        priority = obj["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1000:
            raise PayloadError("wiring.priority is an integer from -1000 to 1000")
        fields["priority"] = priority
    if delete and (wiring is None or fields or group):
        raise PayloadError("deleting names one wiring and nothing else")
    if not delete and not fields and group is None:
        raise PayloadError("the wiring change changes nothing")
    if group is not None and wiring is None:
        raise PayloadError("a wiring for a messaging group needs a wiring id")
    return WiringPatch(wiring, group, fields, delete)


def find_wiring(conn: Conn, wiring_id: str) -> Wiring | None:
    row = conn.execute("SELECT messaging_group_id FROM wirings WHERE id = ?",
                       (wiring_id,)).fetchone()
    if row is None:
        return None
    return next((w for w in q.wirings_for(conn, row[0]) if w.id == wiring_id), None)


def wiring_value(wiring: Wiring, key: str) -> str | int:
    return {"engage": wiring.engage_mode.value, "pattern": wiring.pattern,
            "sender_scope": wiring.sender_scope.value,
            "ignored_policy": wiring.ignored_policy.value,
            "session_mode": wiring.session_mode.value, "priority": wiring.priority,
            "messaging_group": wiring.messaging_group_id}[key]


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    patch = parse_wiring(after)
    keys = list(patch.fields) + (["messaging_group"] if patch.messaging_group else [])
    if patch.wiring is not None:
        before: dict[str, JSONValue] = {"wiring": patch.wiring}
        wiring = find_wiring(conn, patch.wiring)
        if wiring is not None:
            before.update({key: wiring_value(wiring, key) for key in keys})
            if patch.delete:
                before["delete"] = False
        return before
    wirings = g.group_wirings(conn, group)
    before = {}
    for key in keys:
        values = {w.id: wiring_value(w, key) for w in wirings}
        if values:
            distinct = set(values.values())
            before[key] = distinct.pop() if len(distinct) == 1 else values
    return before


@attrs.frozen
class WiringFacts:
    group_wiring_ids: tuple[str, ...] = ()
    wiring_owner: str | None = None  # agent group of the wiring the change names
    messaging_group_exists: bool = False  # the messaging group the change names


def read_facts(conn: Conn, group: str, after: JSONValue) -> WiringFacts:
    named = after if isinstance(after, dict) else {}
    wiring_id, messaging = named.get("wiring"), named.get("messaging_group")
    return WiringFacts(
        group_wiring_ids=tuple(w.id for w in g.group_wirings(conn, group)),
        wiring_owner=g.wiring_owner(conn, wiring_id) if isinstance(wiring_id, str) else None,
        messaging_group_exists=isinstance(messaging, str)
        and g.messaging_group_exists(conn, messaging))


def check_shape(change: ChangeRequest, patch: WiringPatch, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del config
    facts = context.facts if isinstance(context.facts, WiringFacts) else WiringFacts()
    wiring, group = patch.wiring, patch.messaging_group
    if wiring is None:
        return None if facts.group_wiring_ids else "the agent group has no wiring to change"
    if facts.wiring_owner is not None:
        if facts.wiring_owner != change.agent_group:
            return "that wiring belongs to another agent group"
        return "an existing wiring keeps its messaging group" if group else None
    if patch.delete:
        return "no such wiring"
    if group is None or not facts.messaging_group_exists:
        return "a new wiring needs an existing messaging group"
    return None


_WIRING_ATTRS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "engage": ("engage_mode", EngageMode), "sender_scope": ("sender_scope", SenderScope),
    "ignored_policy": ("ignored_policy", IgnoredMessagePolicy),
    "session_mode": ("session_mode", SessionMode), "pattern": ("pattern", str),
    "priority": ("priority", int),
}


def apply(job: ApplyJob) -> int:
    patch = parse_wiring(job.after)
    changes = {_WIRING_ATTRS[k][0]: _WIRING_ATTRS[k][1](v) for k, v in patch.fields.items()}
    if patch.wiring is None:
        wirings = g.group_wirings(job.conn, job.group)
        if not wirings:
            raise ApplyError("the agent group has no wiring to change")
        for wiring in wirings:
            q.put_wiring(job.conn, attrs.evolve(wiring, **changes), job.now)
        return len(wirings)
    existing = find_wiring(job.conn, patch.wiring)
    if existing is not None and existing.agent_group_id != job.group:
        raise ApplyError("that wiring belongs to another agent group")
    if patch.delete:
        if existing is None:
            raise ApplyError("no such wiring")
        q.delete_wiring(job.conn, patch.wiring)
    elif existing is None:
        if patch.messaging_group is None:
            raise ApplyError("a new wiring needs a messaging group")
        q.put_wiring(job.conn, Wiring(id=patch.wiring, messaging_group_id=patch.messaging_group,
                                      agent_group_id=job.group, **changes), job.now)
    else:
        if patch.messaging_group not in (None, existing.messaging_group_id):
            raise ApplyError("an existing wiring keeps its messaging group")
        q.put_wiring(job.conn, attrs.evolve(existing, **changes), job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.WIRING, parse=parse_wiring, read_before=read_before, apply=apply,
    read_facts=read_facts, check_shape=check_shape, auto_approvable=True,
    approver_may_approve=True)
