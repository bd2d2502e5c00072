"""Agent-to-agent messages: a chat row to an ``agent`` destination becomes an inbound row
in a session of the target agent group, which is then woken.

* **Grant**: only through a destination of type ``agent`` granted to the sender's
  agent group (checked by :mod:`.targets`).
* **Target session** (documented rule): the target group's ``agent-shared`` session
  if it has one, else its most recently active session; with neither, the message is
  denied (nothing to deliver to; it is never sent to every session, as the anchor did).
  A session never sends to itself this way.
* **Hops**: the inbound row's id carries the hop count, ``a2a-<hops>-<digest>``, and
  its content starts with a header line ``[a2a from=<session> hop=<n>]``. When the
  receiving agent answers (its outbound row's ``in_reply_to`` names that inbound id)
  and the answer goes to another agent, it is hop ``n + 1``; anything else starts at
  hop 1. Past ``hop_limit`` the message is denied. A sandbox can only *raise* its own
  count by naming a different row, never lower it below what omitting the reply
  marker gives, so the hard bound against a hostile loop is the quota.
* **Quota**: at most ``a2a_per_minute`` messages per sending session per sliding
  minute; past it, denied (in memory: a restart grants a fresh minute).
* **Exactly once**: the digest in the inbound id is of the outbound row's delivery
  key, so handling the row again finds the row already written.
"""

from __future__ import annotations

import re

import attrs

from ironclaw.contract.enums import MessageKind, SessionMode
from ironclaw.contract.ids import validate_message_id
from ironclaw.contract.rows import NewInboundMessage, OutboundMessage
from ironclaw.host.inbound import SessionInbox
from ironclaw.host.inbound.inbox import cap_content
from ironclaw.host.registry import Registry, SessionStatus
from ironclaw.runtime import WallClock

from .policy import DeliveryPolicy, RateWindow
from .records import derived_id
from .targets import AGENT, AgentTarget, Denied

__all__ = ["AgentRelay", "Relayed", "hops_of"]

_A2A_ID = re.compile(r"a2a-(\d{1,4})-[0-9a-f]{24}")


@attrs.frozen
class Relayed:
    target_session_id: str
    inbound_id: str
    hops: int


def hops_of(row: OutboundMessage) -> int:
    """The hop this row would be: one more than the a2a row it answers, else 1."""
    if row.in_reply_to is not None and (match := _A2A_ID.fullmatch(row.in_reply_to)):
        return int(match[1]) + 1
    return 1


class AgentRelay:
    def __init__(self, registry: Registry, inbox: SessionInbox, policy: DeliveryPolicy,
                 clock: WallClock) -> None:
        self._registry = registry
        self._inbox = inbox
        self._policy = policy
        self._clock = clock
        self._windows: dict[str, RateWindow] = {}

    async def relay(self, *, session_id: str, sender_group_id: str, key: str,
                    row: OutboundMessage, target: AgentTarget) -> Relayed | Denied:
        hops = hops_of(row)
        if hops > self._policy.hop_limit:
            return Denied(f"hop limit {self._policy.hop_limit} reached")
        target_session = await self._target_session(target.agent_group_id)
        if target_session is None:
            return Denied("the target agent group has no session")
        if target_session == session_id:
            return Denied("an agent cannot message its own session")
        if not self._window(session_id).admit(key, self._clock.now_us()):
            return Denied(f"a2a quota of {self._policy.a2a_per_minute} per minute reached")
        inbound_id = validate_message_id(f"a2a-{hops}-{derived_id('', key)}")
        header = f"[a2a from={session_id} hop={hops}]\n"
        await self._inbox.put(target_session, NewInboundMessage(
            id=inbound_id, kind=MessageKind.CHAT, content=cap_content(header + row.content),
            engages=True, channel_type=AGENT, platform_id=sender_group_id,
            source_session_id=session_id), wake_reason="a2a")
        return Relayed(target_session, inbound_id, hops)

    def _window(self, session_id: str) -> RateWindow:
        window = self._windows.get(session_id)
        if window is None:
            now = self._clock.now_us()
            if len(self._windows) > 4096:  # forget senders quiet for a whole window
                self._windows = {s: w for s, w in self._windows.items() if not w.idle(now)}
            window = self._windows[session_id] = RateWindow(self._policy.a2a_per_minute)
        return window

    async def _target_session(self, agent_group_id: str) -> str | None:
        shared = await self._registry.find_session(agent_group_id, "", None,
                                                   SessionMode.AGENT_SHARED)
        if shared is not None and shared.status is SessionStatus.ACTIVE:
            return shared.id
        for session in await self._registry.list_sessions():  # most recently active first
            if session.agent_group_id == agent_group_id and (
                    session.status is SessionStatus.ACTIVE):
                return session.id
        return None
