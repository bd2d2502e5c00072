"""``chat_policy``: ``{"messaging_group", "unknown_sender_policy"}``, setting how a chat
wired to the agent group treats a sender it does not know: ``strict`` drops them,
``request_approval`` asks a human (pairing), ``public`` lets anyone in. The router
reads the policy on every message, so the change takes effect on the next one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ironclaw.contract.enums import ChangeKind, UnknownSenderPolicy
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..payloads import ENTITY_ID, PayloadError, expect_ident, expect_object
from .base import ApplyError, ApplyJob, ChangeContext, ChangeKindSpec, Conn

if TYPE_CHECKING:
    from ..config import GatewayConfig

FIELDS = ("messaging_group", "unknown_sender_policy")


@attrs.frozen
class ChatPolicy:
    messaging_group: str
    unknown_sender_policy: UnknownSenderPolicy


def parse_chat_policy(value: JSONValue) -> ChatPolicy:
    obj = expect_object(value, "chat_policy", FIELDS, FIELDS)
    group = expect_ident(obj["messaging_group"], "messaging group", ENTITY_ID)
    policy = obj["unknown_sender_policy"]
    if policy not in {p.value for p in UnknownSenderPolicy}:
        raise PayloadError(f"unknown_sender_policy is one of "
                           f"{', '.join(p.value for p in UnknownSenderPolicy)}")
    return ChatPolicy(group, UnknownSenderPolicy(policy))


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    del group
    wanted = parse_chat_policy(after)
    before: dict[str, JSONValue] = {"messaging_group": wanted.messaging_group}
    if g.messaging_group_exists(conn, wanted.messaging_group):
        current = q.get_messaging_group(conn, wanted.messaging_group)
        before["unknown_sender_policy"] = current.unknown_sender_policy.value
    return before


def read_facts(conn: Conn, group: str, after: JSONValue) -> object:
    """The agent groups wired to the chat the change names."""
    named = after.get("messaging_group") if isinstance(after, dict) else None
    return tuple(g.wired_agent_groups(conn, named)) if isinstance(named, str) else ()


def check_shape(change: ChangeRequest, parsed: ChatPolicy, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del parsed, config
    wired = context.facts if isinstance(context.facts, tuple) else ()
    if change.agent_group not in wired:
        return "the chat is not wired to this agent group"
    return None


def apply(job: ApplyJob) -> int:
    wanted = parse_chat_policy(job.after)
    if job.group not in g.wired_agent_groups(job.conn, wanted.messaging_group):
        raise ApplyError("the chat is not wired to this agent group")
    current = q.get_messaging_group(job.conn, wanted.messaging_group)
    q.put_messaging_group(job.conn, attrs.evolve(
        current, unknown_sender_policy=wanted.unknown_sender_policy), job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.CHAT_POLICY, parse=parse_chat_policy, read_before=read_before,
    apply=apply, read_facts=read_facts, check_shape=check_shape)
