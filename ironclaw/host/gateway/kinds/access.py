"""``access``: ``{"user", "member_of": [agent group, ...], "request"?,
"messaging_group"?}``, making a user a member of agent groups; with ``request``, it
grants that pending access request (pairing), which a refusal or expiry denies.

The router raises one such change per access request from a stranger, so those are
counted per sender, per chat and per channel instance rather than against the router
as one requester: strangers fill only their own share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue, parse_json
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..messages import access_change_id
from ..payloads import ENTITY_ID, USER, expect_ident, expect_list, expect_object, unique
from ..rbac import TooManyPending
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn

if TYPE_CHECKING:
    from ..config import GatewayConfig

ROUTER = "system:router"  # who raises access requests


@attrs.frozen
class AccessGrant:
    user: str
    member_of: tuple[str, ...]
    request: str | None
    messaging_group: str | None


def parse_access(value: JSONValue) -> AccessGrant:
    obj = expect_object(value, "access", ("user", "member_of", "request", "messaging_group"),
                        ("user", "member_of"))
    groups = expect_list(obj["member_of"], "member_of", 64, min_items=1)
    return AccessGrant(
        expect_ident(obj["user"], "user", USER),
        unique([expect_ident(g, "agent group", ENTITY_ID) for g in groups], "member_of"),
        expect_ident(obj["request"], "request", ENTITY_ID) if "request" in obj else None,
        expect_ident(obj["messaging_group"], "messaging group", ENTITY_ID)
        if "messaging_group" in obj else None)


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    del group
    grant = parse_access(after)
    before: dict[str, JSONValue] = {k: after[k] for k in ("user", "request", "messaging_group")
                                    if isinstance(after, dict) and k in after}
    before["member_of"] = [ag for ag in grant.member_of if g.is_member(conn, grant.user, ag)]
    return before


@attrs.frozen
class AccessFacts:
    request: tuple[str, str, str] | None = None  # (status, user, messaging group)


def read_facts(conn: Conn, group: str, after: JSONValue) -> AccessFacts:
    del group
    request = after.get("request") if isinstance(after, dict) else None
    return AccessFacts(g.access_request(conn, request) if isinstance(request, str) else None)


def check_shape(change: ChangeRequest, grant: AccessGrant, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del change, config
    missing = [ag for ag in grant.member_of if ag not in context.group_ids]
    if missing:
        return f"no agent group {missing[0]!r:.70}"
    if grant.request is None:
        return None
    facts = context.facts if isinstance(context.facts, AccessFacts) else AccessFacts()
    if facts.request is None:
        return "no such access request"
    status, user, messaging_group = facts.request
    if status != "pending":
        return f"the access request is already {status}"
    if user != grant.user or grant.messaging_group not in (None, messaging_group):
        return "the change does not match its access request"
    return None


def apply(job: ApplyJob) -> int:
    grant = parse_access(job.after)
    for agent_group in grant.member_of:
        q.add_member(job.conn, grant.user, agent_group, job.now)
    if grant.request is not None:
        g.settle_access_request(job.conn, grant.request, granted=True,
                                decided_by=job.decided_by, now=job.now)
    return len(grant.member_of)


def _raised_for(change: ChangeRequest) -> str | None:
    """The access request the change was raised for: its id is derived from the
    request's, so a forged change names a request in vain."""
    after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
    request = after.get("request") if isinstance(after, dict) else None
    if isinstance(request, str) and change.id == access_change_id(request):
        return request
    return None


def on_refused(conn: Conn, change: ChangeRequest, decided_by: str, now: int) -> None:
    """A refused or expired access change denies its request, so the sender may ask
    again later instead of being held by a request nobody can grant."""
    request = _raised_for(change)
    if request is not None:
        g.settle_access_request(conn, request, granted=False, decided_by=decided_by, now=now)


def own_quota(conn: Conn, change: ChangeRequest, config: GatewayConfig) -> bool:
    """The router's access requests count per sender, per chat and per channel."""
    request = _raised_for(change) if change.requested_by == ROUTER else None
    if request is None:
        return False
    for scope, count, limit in (
        ("sender", g.pending_access_by_sender(conn, request),
         config.access_max_pending_per_sender),
        ("chat", g.pending_access_in_chat(conn, request), config.access_max_pending_per_chat),
        ("channel", g.pending_access_on_channel(conn, request),
         config.access_max_pending_per_channel),
    ):
        if count >= limit:
            raise TooManyPending(f"access requests: this {scope} already has {limit} pending")
    return True


SPEC = ChangeKindSpec(
    kind=ChangeKind.ACCESS, parse=parse_access, read_before=read_before, apply=apply,
    read_facts=read_facts, check_shape=check_shape, on_refused=on_refused,
    own_quota=own_quota)
