"""Where a chat row may go: its session's origin chat, or a destination granted to its
agent group. Pure decisions over a :class:`SessionContext` loaded once per batch (so a
revoked grant takes effect from the next batch, and a held row re-checks when due).

Rules, in order:

* ``destination`` names a registry destination of the session's agent group, else the
  row is denied. Explicit ``channel_type`` / ``platform_id`` on the row must then agree
  with that destination. A ``channel`` destination sends there (with the row's thread);
  an ``agent`` destination is agent-to-agent, to its target agent group.
* no ``destination`` and no explicit fields: the origin chat (the session's messaging
  group: channel, instance, platform id; the row's thread, else the session's).
* no ``destination`` but explicit fields: they must match the origin chat (then it is
  the origin, thread as above), or ``channel_type = "agent"`` with ``platform_id`` the
  target group of a granted agent destination, or exactly a granted channel
  destination. Anything else is denied: the sandbox cannot name its own target.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ironclaw.contract.rows import OutboundMessage
from ironclaw.host.registry import Registry, RegistryDestination

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


def origin_target(context: SessionContext, thread_id: str | None = None) -> Target:
    origin = context.origin
    if origin is None:
        return Denied("the session has no origin chat")
    return ChannelTarget(origin.channel, adapter_instance(origin.channel, origin.instance),
                         origin.platform_id,
                         thread_id if thread_id is not None else origin.thread_id)


def _channel_destination(dest: RegistryDestination, row: OutboundMessage) -> Target:
    if not dest.channel or not dest.platform_id:
        return Denied("the destination is incomplete")
    if row.channel_type not in (None, dest.channel) or row.platform_id not in (
            None, dest.platform_id):
        return Denied("explicit target does not match the destination")
    return ChannelTarget(dest.channel, adapter_instance(dest.channel, dest.instance),
                         dest.platform_id, row.thread_id)


def _agent_destination(dest: RegistryDestination, row: OutboundMessage) -> Target:
    if not dest.target_agent_group_id:
        return Denied("the destination names no agent group")
    if row.channel_type not in (None, AGENT) or row.platform_id not in (
            None, dest.target_agent_group_id):
        return Denied("explicit target does not match the destination")
    return AgentTarget(dest.target_agent_group_id, dest.name)


def resolve_target(row: OutboundMessage, context: SessionContext) -> Target:
    if row.destination is not None:
        dest = context.destinations.get(row.destination)
        if dest is None:
            return Denied("no such destination for this agent group")
        if dest.type == AGENT:
            return _agent_destination(dest, row)
        if dest.type == "channel":
            return _channel_destination(dest, row)
        return Denied("unsupported destination type")
    if row.channel_type is None and row.platform_id is None:
        return origin_target(context, row.thread_id)
    origin = context.origin
    if origin is not None and row.channel_type in (None, origin.channel) and (
            row.platform_id in (None, origin.platform_id)):
        return origin_target(context, row.thread_id)
    for dest in context.destinations.values():
        if row.channel_type == AGENT and dest.type == AGENT and row.platform_id and (
                dest.target_agent_group_id == row.platform_id):
            return AgentTarget(row.platform_id, dest.name)
        if dest.type == "channel" and (dest.channel, dest.platform_id) == (
                row.channel_type, row.platform_id):
            return _channel_destination(dest, row)
    return Denied("explicit target is neither the origin chat nor a granted destination")
