"""``permissions``: ``{"grant"|"revoke": role, "member"|"user": id, "scope"?}`` or a list
of those; or ``{"action", "payload"}`` for an action the contract does not know
(recorded for a human to see, applies nothing). Roles: owner (always global), admin
(of this agent group or global), and member or viewer (membership of this agent
group)."""

from __future__ import annotations

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import Role, RoleGrant
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..payloads import USER, PayloadError, expect_ident, expect_list, expect_object, expect_text
from .base import ApplyError, ApplyJob, ChangeKindSpec, Conn

ROLES = ("owner", "admin", "member", "viewer")  # viewer and member both mean membership
MAX_OPS = 16


@attrs.frozen
class PermissionOp:
    grant: bool  # False: revoke
    role: str
    user: str
    user_key: str  # "member" or "user", as written
    global_scope: bool


@attrs.frozen
class OpaqueAction:
    """An action the contract does not know: shown to a human, never executed."""

    action: str
    payload: JSONValue


def parse_permissions(value: JSONValue) -> tuple[PermissionOp, ...] | OpaqueAction:
    if isinstance(value, dict) and "action" in value:
        obj = expect_object(value, "permissions", ("action", "payload"), ("action", "payload"))
        return OpaqueAction(expect_text(obj["action"], "action", 64), obj["payload"])
    items = value if isinstance(value, list) else [value]
    ops = []
    for item in expect_list(items, "permissions", MAX_OPS, min_items=1):
        obj = expect_object(item, "permission", ("grant", "revoke", "member", "user", "scope"))
        verbs = [k for k in ("grant", "revoke") if k in obj]
        users = [k for k in ("member", "user") if k in obj]
        if len(verbs) != 1 or len(users) != 1:
            raise PayloadError("a permission names one of grant/revoke and one of member/user")
        role = obj[verbs[0]]
        if role not in ROLES:
            raise PayloadError(f"unknown role {role!r:.40}")
        scope = obj.get("scope", "global" if role == "owner" else "group")
        if scope not in ("group", "global") or (role == "owner" and scope != "global"):
            raise PayloadError("scope is group or global; owner is always global")
        if role in ("member", "viewer") and scope != "group":
            raise PayloadError("membership is always of this agent group")
        ops.append(PermissionOp(verbs[0] == "grant", role,
                                expect_ident(obj[users[0]], "user", USER), users[0],
                                scope == "global"))
    return tuple(ops)


def grants_owner(value: JSONValue) -> bool:
    try:
        parsed = parse_permissions(value)
    except PayloadError:
        return False
    return not isinstance(parsed, OpaqueAction) and any(
        op.grant and op.role == "owner" for op in parsed)


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


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
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


def apply(job: ApplyJob) -> int:
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


SPEC = ChangeKindSpec(
    kind=ChangeKind.PERMISSIONS, parse=parse_permissions, read_before=read_before,
    apply=apply, grants_owner=grants_owner)
