"""Applying an approved change: idempotent and transactional, keyed by change id.

:func:`apply_change` runs inside ``HostStore.transaction``: the registry mutation and
``mark_applied`` commit together or not at all, so a crash leaves either both or
neither, and re-applying an applied change is a no-op. Each applier parses ``after``
with the same grammar the shape verifier checked, and mutates nothing but what the
change names, for the change's own agent group (never one named in the payload).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import attrs

from ironclaw.contract.enums import (
    ChangeKind,
    ChangeStatus,
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
)
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue, parse_json
from ironclaw.host.registry import (
    AgentGroup,
    NotFound,
    Persona,
    RegistryDestination,
    Role,
    RoleGrant,
    Wiring,
)
from ironclaw.host.registry import queries as q
from ironclaw.host.store.changes import (
    ChangeConflict,
    StoredChange,
    _get,
    _mark_applied,
)

from . import grants as g
from .config import GatewayConfig
from .payloads import (
    OpaqueAction,
    parse_access,
    parse_create_agent,
    parse_egress,
    parse_mcp_access,
    parse_mounts,
    parse_packages,
    parse_permissions,
    parse_persona,
    parse_tools,
    parse_wiring,
)
from .state import find_wiring

Conn = Any

# The step that records the apply. A module-level name, so a test can make it fail
# after the registry write and prove the rollback.
mark_applied = _mark_applied


class ApplyError(Exception):
    """The approved change no longer fits the registry (a folder taken since, a wiring
    gone). Nothing was written; the change stays approved."""


@attrs.frozen
class Applied:
    stored: StoredChange
    effects: int  # records written
    already: bool  # it had been applied before: nothing was done


def apply_change(conn: Conn, change_id: str, now: int, config: GatewayConfig) -> Applied:
    current = _get(conn, change_id)
    if current.status is ChangeStatus.APPLIED:
        return Applied(current, 0, True)
    if current.status is not ChangeStatus.APPROVED:
        raise ChangeConflict(f"{change_id} is {current.status}, not approved")
    change = current.change
    decided_by = current.decision.decided_by if current.decision else "unknown"
    after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    effects = _APPLIERS[change.kind](_Job(conn, change, after, now, config, decided_by))
    return Applied(mark_applied(conn, change_id, now), effects, False)


@attrs.frozen
class _Job:
    conn: Conn
    change: ChangeRequest
    after: JSONValue
    now: int
    config: GatewayConfig
    decided_by: str

    @property
    def group(self) -> str:
        return self.change.agent_group

    def agent_group(self) -> AgentGroup:
        return q.get_agent_group(self.conn, self.group)


def _persona(job: _Job) -> int:
    docs = parse_persona(job.after)
    group = job.agent_group()
    q.put_agent_group(job.conn, attrs.evolve(group, persona=attrs.evolve(group.persona, **docs)),
                      job.now)
    return len(docs)


def _tools(job: _Job) -> int:
    tools = parse_tools(job.after).tools
    group = attrs.evolve(job.agent_group(), enabled_tools=cast(Any, tools))
    q.put_agent_group(job.conn, group, job.now)
    return 1


def _packages(job: _Job) -> int:
    wanted = parse_packages(job.after)
    current = g.get_grant(job.conn, job.group, g.PACKAGES) or {}
    merged = {**current, **{manager: list(names) for manager, names in wanted.items()}}
    g.set_grant(job.conn, job.group, g.PACKAGES, merged, job.change.id, job.now)
    return len(wanted)


def _mounts(job: _Job) -> int:
    parse_mounts(job.after)
    g.set_grant(job.conn, job.group, g.MOUNTS, job.after, job.change.id, job.now)
    return 1


def _mcp(job: _Job) -> int:
    parse_mcp_access(job.after)
    g.set_grant(job.conn, job.group, g.MCP_ACCESS, job.after, job.change.id, job.now)
    return 1


def _egress(job: _Job) -> int:
    patch = parse_egress(job.after)
    effects = 0
    if patch.hosts is not None:
        g.set_grant(job.conn, job.group, g.EGRESS_HOSTS, list(patch.hosts), job.change.id,
                    job.now)
        effects += 1
    for name, dest in (patch.destinations or {}).items():
        if dest is None:
            q.remove_destination(job.conn, job.group, name)
        else:
            q.put_destination(job.conn, RegistryDestination(
                agent_group_id=job.group, name=name, type=dest.type,
                display_name=dest.display_name, channel=dest.channel,
                instance=dest.instance, platform_id=dest.platform_id,
                target_agent_group_id=dest.target_agent_group))
        effects += 1
    return effects


_WIRING_ATTRS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "engage": ("engage_mode", EngageMode), "sender_scope": ("sender_scope", SenderScope),
    "ignored_policy": ("ignored_policy", IgnoredMessagePolicy),
    "session_mode": ("session_mode", SessionMode), "pattern": ("pattern", str),
    "priority": ("priority", int),
}


def _wiring(job: _Job) -> int:
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


def _permissions(job: _Job) -> int:
    parsed = parse_permissions(job.after)
    if isinstance(parsed, OpaqueAction):
        return 0  # an unknown action: a human saw it; there is nothing to execute
    for op in parsed:
        if op.role in ("member", "viewer"):
            if op.grant:
                q.add_member(job.conn, op.user, job.group, job.now)
            else:
                q.remove_member(job.conn, op.user, job.group)
            continue
        role = Role.OWNER if op.role == "owner" else Role.ADMIN
        grant = RoleGrant(op.user, role, None if op.global_scope else job.group)
        if op.grant:
            q.grant_role(job.conn, grant, job.now)
        else:
            q.revoke_role(job.conn, grant)
    if not q.owners(job.conn) and any(op.role == "owner" and not op.grant for op in parsed):
        raise ApplyError("that would remove the last owner")
    return len(parsed)


def _create_agent(job: _Job) -> int:
    agent = parse_create_agent(job.after)
    try:
        q.get_agent_group(job.conn, agent.folder)
    except NotFound:
        pass
    else:
        raise ApplyError(f"agent group {agent.folder!r} already exists")
    q.put_agent_group(job.conn, AgentGroup(
        id=agent.folder, name=agent.name, folder=agent.folder,
        provider=agent.provider or job.config.default_provider,
        model=agent.model or job.config.default_model, persona=Persona(**agent.persona),
        enabled_tools=cast(Any, agent.tools)), job.now)
    return 1


def _access(job: _Job) -> int:
    grant = parse_access(job.after)
    for agent_group in grant.member_of:
        q.add_member(job.conn, grant.user, agent_group, job.now)
    if grant.request is not None:
        g.settle_access_request(job.conn, grant.request, granted=True,
                                decided_by=job.decided_by, now=job.now)
    return len(grant.member_of)


_APPLIERS: dict[ChangeKind, Callable[[_Job], int]] = {
    ChangeKind.PERSONA: _persona, ChangeKind.ENABLED_TOOLS: _tools,
    ChangeKind.PACKAGES: _packages, ChangeKind.MOUNTS: _mounts, ChangeKind.EGRESS: _egress,
    ChangeKind.MCP_ACCESS: _mcp, ChangeKind.WIRING: _wiring,
    ChangeKind.PERMISSIONS: _permissions, ChangeKind.CREATE_AGENT: _create_agent,
    ChangeKind.ACCESS: _access,
}
