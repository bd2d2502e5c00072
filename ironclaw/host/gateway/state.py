"""Reading the current state a change would alter: its ``before``, and what the
verifiers need to know about the registry.

``before`` mirrors the shape of ``after``: the current value of exactly the parts the
change names, so the structural diff is the change. Both are read in one call on the
store's thread, so they describe one moment. A payload that does not parse gets
``{}``; the shape verifier rejects it anyway.
"""

from __future__ import annotations

from typing import Any

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import NotFound, Role, Wiring
from ironclaw.host.registry import queries as q

from . import grants as g
from .payloads import (
    OpaqueAction,
    PayloadError,
    parse_access,
    parse_egress,
    parse_mcp_access,
    parse_mounts,
    parse_packages,
    parse_permissions,
    parse_persona,
    parse_tools,
    parse_wiring,
)

Conn = Any


@attrs.frozen
class ChangeContext:
    """What the deterministic verifiers may consult besides the change itself."""

    group_exists: bool
    group_ids: frozenset[str] = frozenset()
    group_names: frozenset[str] = frozenset()  # casefolded
    group_folders: frozenset[str] = frozenset()
    group_wiring_ids: tuple[str, ...] = ()
    wiring_owner: str | None = None  # agent group of the wiring the change names
    messaging_group_exists: bool = False  # the messaging group the change names
    access_request: tuple[str, str, str] | None = None  # (status, user, messaging group)


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


def role_labels(conn: Conn, user_id: str, agent_group_id: str) -> list[str]:
    """The user's standing with this agent group, as permission changes name it."""
    labels = []
    for grant in q.roles_of(conn, user_id):
        if grant.role is Role.OWNER:
            labels.append("owner")
        elif grant.scope is None:
            labels.append("admin:global")
        elif grant.scope == agent_group_id:
            labels.append("admin")
    if g.is_member(conn, user_id, agent_group_id):
        labels.append("member")
    return sorted(labels)


def _persona(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    docs = parse_persona(after)
    persona = q.get_agent_group(conn, group).persona
    return {key: getattr(persona, key) for key in docs}


def _tools(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    current = list(q.get_agent_group(conn, group).enabled_tools)
    return {"tools": current} if parse_tools(after).wrapped else current


def _packages(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    current = g.get_grant(conn, group, g.PACKAGES) or {}
    return {manager: current.get(manager, []) for manager in parse_packages(after)}


def _mounts(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_mounts(after)
    return g.get_grant(conn, group, g.MOUNTS) or []


def _egress(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    patch = parse_egress(after)
    before: dict[str, JSONValue] = {}
    if patch.hosts is not None:
        before["hosts"] = g.get_grant(conn, group, g.EGRESS_HOSTS) or []
    if patch.destinations is not None:
        current = {d.name: {k: v for k, v in {
            "type": d.type, "display_name": d.display_name, "channel": d.channel,
            "instance": d.instance, "platform_id": d.platform_id,
            "target_agent_group": d.target_agent_group_id}.items() if v is not None}
            for d in q.destinations_for(conn, group)}
        before["destinations"] = {name: current.get(name) for name in patch.destinations}
    return before


def _mcp(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parse_mcp_access(after)
    return g.get_grant(conn, group, g.MCP_ACCESS) or {"servers": {}}


def _wiring(conn: Conn, group: str, after: JSONValue) -> JSONValue:
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


def _permissions(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    parsed = parse_permissions(after)
    if isinstance(parsed, OpaqueAction):
        return {}
    items = after if isinstance(after, list) else [after]
    mirrored = []
    for op, item in zip(parsed, items, strict=True):
        mirror = {k: item[k] for k in ("member", "user", "scope") if k in item}
        mirror["grant" if op.grant else "revoke"] = role_labels(conn, op.user, group)
        mirrored.append(mirror)
    return mirrored if isinstance(after, list) else mirrored[0]


def _access(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    del group
    grant = parse_access(after)
    before: dict[str, JSONValue] = {k: after[k] for k in ("user", "request", "messaging_group")
                                    if k in after}
    before["member_of"] = [ag for ag in grant.member_of if g.is_member(conn, grant.user, ag)]
    return before


def _nothing(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    del conn, group, after
    return {}


_BEFORE = {
    ChangeKind.PERSONA: _persona, ChangeKind.ENABLED_TOOLS: _tools,
    ChangeKind.PACKAGES: _packages, ChangeKind.MOUNTS: _mounts, ChangeKind.EGRESS: _egress,
    ChangeKind.MCP_ACCESS: _mcp, ChangeKind.WIRING: _wiring,
    ChangeKind.PERMISSIONS: _permissions, ChangeKind.CREATE_AGENT: _nothing,
    ChangeKind.ACCESS: _access,
}


def read_before(conn: Conn, kind: ChangeKind, agent_group: str, after: JSONValue
                ) -> JSONValue:
    try:
        return _BEFORE[kind](conn, agent_group, after)
    except (PayloadError, NotFound):
        return {}


def read_context(conn: Conn, kind: ChangeKind, agent_group: str, after: JSONValue
                 ) -> ChangeContext:
    groups = conn.execute("SELECT id, name, folder FROM agent_groups").fetchall()
    named = after if isinstance(after, dict) else {}
    wiring_id = named.get("wiring") if kind is ChangeKind.WIRING else None
    messaging = named.get("messaging_group")
    request = named.get("request") if kind is ChangeKind.ACCESS else None
    return ChangeContext(
        group_exists=any(group_id == agent_group for group_id, _, _ in groups),
        group_ids=frozenset(group_id for group_id, _, _ in groups),
        group_names=frozenset(name.casefold() for _, name, _ in groups),
        group_folders=frozenset(folder for _, _, folder in groups),
        group_wiring_ids=tuple(w.id for w in g.group_wirings(conn, agent_group)),
        wiring_owner=g.wiring_owner(conn, wiring_id) if isinstance(wiring_id, str) else None,
        messaging_group_exists=isinstance(messaging, str)
        and g.messaging_group_exists(conn, messaging),
        access_request=g.access_request(conn, request) if isinstance(request, str) else None)


def snapshot(conn: Conn, kind: ChangeKind, agent_group: str, after: JSONValue
             ) -> tuple[JSONValue, ChangeContext]:
    """``before`` and the verifiers' context, read together on the store's thread."""
    return (read_before(conn, kind, agent_group, after),
            read_context(conn, kind, agent_group, after))
