"""Where a chat row may go: its session's origin chat, or a destination granted to its
agent group. Pure decisions over a :class:`SessionContext` loaded once per batch (so a
revoked grant takes effect from the next batch, and a held row re-checks when due).

Rules, in order:

* ``destination`` names a registry destination of the session's agent group, else the
  row is denied. Explicit ``channel_type`` / ``platform_id`` on the row must then agree
  with that destination. A ``channel`` destination sends there; an ``agent``
  destination is agent-to-agent, to its target agent group.
* no ``destination`` and no explicit fields: the origin chat (the session's messaging
  group: channel, instance, platform id).
* no ``destination`` but explicit fields: they must match the origin chat (then it is
  the origin), or ``channel_type = "agent"`` with ``platform_id`` the target group of a
  granted agent destination, or exactly a granted channel destination. Anything else is
  denied: the sandbox cannot name its own target.

A reply (a row whose ``in_reply_to`` names an inbound row of this session that the
host recorded, :class:`~ironclaw.host.registry.InboundOrigin`) to the origin goes to
the chat and thread that message came from, with the platform's id of it: the same
chat in every mode but agent-shared, where each chat that feeds the session gets its
own answers. Elsewhere the thread is the session's own (per-thread), and a named
destination is threaded only by a message that came from it. A ``thread_id`` the agent
writes is ignored: on some platforms a thread is a chat of its own (a Discord thread is
a channel), so honouring it would let an agent post anywhere the bot can. The record
is keyed by session, so naming another session's row finds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ironclaw.contract.rows import OutboundMessage
from ironclaw.host.registry import InboundOrigin, Registry, RegistryDestination

__all__ = [
    "AGENT",
    "AgentTarget",
    "ChannelTarget",
    "Denied",
    "Origin",
    "SessionContext",
    "adapter_instance",
    "load_context",
    "origin_target",
    "resolve_target",
]

AGENT = "agent"


@attrs.frozen
class Origin:
    channel: str
    instance: str
    platform_id: str
    thread_id: str | None


@attrs.frozen
class SessionContext:
    session_id: str
    agent_group_id: str
    origin: Origin | None
    destinations: Mapping[str, RegistryDestination]


@attrs.frozen
class ChannelTarget:
    channel: str
    instance: str
    platform_id: str
    thread_id: str | None
    in_reply_to: str | None = None  # the platform's id of the message answered


@attrs.frozen
class AgentTarget:
    agent_group_id: str
    destination: str


@attrs.frozen
class Denied:
    reason: str


Target = ChannelTarget | AgentTarget | Denied


async def load_context(registry: Registry, session_id: str,
                       agent_group_id: str) -> SessionContext:
    session, group, destinations = await registry.session_context(session_id,
                                                                  agent_group_id)
    origin: Origin | None = None
    if session is not None:
        agent_group_id = session.agent_group_id
        if group is not None:
            origin = Origin(group.channel, group.instance, group.platform_id,
                            session.thread_id)
    return SessionContext(session_id, agent_group_id, origin,
                          {d.name: d for d in destinations})


def adapter_instance(channel: str, instance: str | None) -> str:
    """The registry stores a channel's default instance as the channel's own name
    (``ensure_messaging_group``); the channel layer calls it ``""``."""
    return "" if instance in (None, "", channel) else str(instance)


def _answering(channel: str, instance: str, platform_id: str,
               answered: InboundOrigin | None) -> InboundOrigin | None:
    """``answered`` if it came from this very chat, else None."""
    if answered is None or (answered.channel, answered.platform_id) != (channel, platform_id):
        return None
    if adapter_instance(answered.channel, answered.instance) != instance:
        return None
    return answered


def _in_chat(channel: str, instance: str, platform_id: str, thread_id: str | None,
             answered: InboundOrigin | None) -> ChannelTarget:
    same = _answering(channel, instance, platform_id, answered)
    if thread_id is None and same is not None:
        thread_id = same.thread_id
    return ChannelTarget(channel, instance, platform_id, thread_id,
                         None if same is None else same.platform_message_id)


def origin_target(context: SessionContext, answered: InboundOrigin | None = None) -> Target:
    """The session's chat; for a reply, the chat and thread its message came from
    (the same chat except in an agent-shared session, which several chats feed)."""
    if answered is not None:
        return _in_chat(answered.channel, adapter_instance(answered.channel,
                                                           answered.instance),
                        answered.platform_id, None, answered)
    origin = context.origin
    if origin is None:
        return Denied("the session has no origin chat")
    return _in_chat(origin.channel, adapter_instance(origin.channel, origin.instance),
                    origin.platform_id, origin.thread_id, None)


def _explicit_origin(context: SessionContext, answered: InboundOrigin | None) -> Target:
    """The row named the origin chat itself: there, threaded only by a message of it."""
    origin = context.origin
    assert origin is not None
    return _in_chat(origin.channel, adapter_instance(origin.channel, origin.instance),
                    origin.platform_id, origin.thread_id, answered)


def _channel_destination(dest: RegistryDestination, row: OutboundMessage,
                         answered: InboundOrigin | None) -> Target:
    if not dest.channel or not dest.platform_id:
        return Denied("the destination is incomplete")
    if row.channel_type not in (None, dest.channel) or row.platform_id not in (
            None, dest.platform_id):
        return Denied("explicit target does not match the destination")
    return _in_chat(dest.channel, adapter_instance(dest.channel, dest.instance),
                    dest.platform_id, None, answered)


def _agent_destination(dest: RegistryDestination, row: OutboundMessage) -> Target:
    if not dest.target_agent_group_id:
        return Denied("the destination names no agent group")
    if row.channel_type not in (None, AGENT) or row.platform_id not in (
            None, dest.target_agent_group_id):
        return Denied("explicit target does not match the destination")
    return AgentTarget(dest.target_agent_group_id, dest.name)


def resolve_target(row: OutboundMessage, context: SessionContext,
                   answered: InboundOrigin | None = None) -> Target:
    """Where ``row`` goes; ``answered`` is the host's record of the inbound row it
    names in ``in_reply_to``, if any."""
    if row.destination is not None:
        dest = context.destinations.get(row.destination)
        if dest is None:
            return Denied("no such destination for this agent group")
        if dest.type == AGENT:
            return _agent_destination(dest, row)
        if dest.type == "channel":
            return _channel_destination(dest, row, answered)
        return Denied("unsupported destination type")
    if row.channel_type is None and row.platform_id is None:
        return origin_target(context, answered)
    origin = context.origin
    if origin is not None and row.channel_type in (None, origin.channel) and (
            row.platform_id in (None, origin.platform_id)):
        return _explicit_origin(context, answered)
    for dest in context.destinations.values():
        if row.channel_type == AGENT and dest.type == AGENT and row.platform_id and (
                dest.target_agent_group_id == row.platform_id):
            return AgentTarget(row.platform_id, dest.name)
        if dest.type == "channel" and (dest.channel, dest.platform_id) == (
                row.channel_type, row.platform_id):
            return _channel_destination(dest, row, answered)
    return Denied("explicit target is neither the origin chat nor a granted destination")
