"""Who may decide changes from chat: owners who opted in, one by one.

Off by default: an owner (a registry user with the ``owner`` role, ``<channel>:<stable
sender id>``) decides from chat only once a principal holding the API's ``owner`` role
turned it on for them (``POST /v1/chat-approvals``, ``ironctl owners chat-approvals
enable``). Enabling and disabling are audited. Disabling is always allowed (it is the
safe direction, e.g. after a suspected account takeover); enabling is only for a
current owner, and every chat command checks both the role and the opt-in again.

Only on a channel whose platform authenticates the sender
(:mod:`ironclaw.host.channels.trust`): an IRC nick or a webhook's ``sender`` field is
anyone's to claim, so enabling one is refused, an opt-in stored for one is removed at
start (:meth:`ChatApprovers.drop_unauthenticated`), and no command from one is obeyed.
"""

from __future__ import annotations

import logging

import attrs

from ironclaw.contract.clock import now_us
from ironclaw.host.channels.trust import SENDER_AUTHENTICATION, authenticates_senders
from ironclaw.host.gateway import AuditSink
from ironclaw.host.gateway.rbac import is_chat_user_id
from ironclaw.host.registry import Registry, RegistryError, Role
from ironclaw.host.store import HostStore

from . import store as q

log = logging.getLogger(__name__)

# Who removed an opt-in that the start-up check refused (audit ``by``).
SYSTEM_CHECK = "system:sender-authentication"


class NotAnOwner(RegistryError):
    """Chat approvals are for owners only."""


class UnauthenticatedChannel(RegistryError):
    """Chat approvals need a platform that authenticates the sender."""

    def __init__(self, user_id: str) -> None:
        channel = user_id.partition(":")[0]
        known = SENDER_AUTHENTICATION.get(channel)
        why = known.why if known is not None else "an unknown channel vouches for nobody"
        trusted = ", ".join(c for c, a in SENDER_AUTHENTICATION.items() if a.authenticated)
        super().__init__(
            f"chat approvals cannot be turned on for {user_id!r:.80}: {channel!r:.40} does "
            f"not authenticate its senders ({why}). Channels that do: {trusted}")


@attrs.frozen
class ApproverView:
    user_id: str
    enabled_by: str
    enabled_at: int
    owner: bool  # still an owner (a revoked owner's opt-in no longer counts)


class ChatApprovers:
    def __init__(self, store: HostStore, registry: Registry, audit: AuditSink) -> None:
        self._store = store
        self._registry = registry
        self._audit = audit

    async def is_owner(self, user_id: str) -> bool:
        return any(grant.role is Role.OWNER
                   for grant in await self._registry.roles_of(user_id))

    async def allowed(self, user_id: str) -> tuple[bool, bool]:
        """``(is an owner, has opted in)``, both read now."""
        return (await self.is_owner(user_id),
                await self._store.call(q.is_approver, user_id))

    async def drop_unauthenticated(self) -> list[str]:
        """Remove (and audit, and log) every opt-in on a channel that does not
        authenticate its senders, stored before that was refused. Returns their ids."""
        dropped = []
        for approver in await self._store.call(q.list_approvers):
            if authenticates_senders(approver.user_id.partition(":")[0]):
                continue
            if await self._store.transaction(q.disable_approver, approver.user_id):
                dropped.append(approver.user_id)
                log.warning("chat approvals turned off for %s at start: %s",
                            approver.user_id,
                            str(UnauthenticatedChannel(approver.user_id)).replace(
                                "cannot be turned on", "cannot stay on", 1))
                await self._audit.append("chat.approvals_disabled",
                                         user_id=approver.user_id, by=SYSTEM_CHECK)
        return dropped

    async def enable(self, user_id: str, *, by: str) -> bool:
        """Turn chat approvals on for ``user_id``; True if it was off. Raises
        :class:`NotAnOwner` (a RegistryError) for anyone who is not an owner."""
        if not is_chat_user_id(user_id):
            raise NotAnOwner(f"{user_id!r:.80} is not a chat user id (<channel>:<handle>)")
        if not authenticates_senders(user_id.partition(":")[0]):
            raise UnauthenticatedChannel(user_id)
        if not await self.is_owner(user_id):
            raise NotAnOwner(f"{user_id} is not an owner; chat approvals are for owners")
        changed = await self._store.transaction(q.enable_approver, user_id, by, now_us())
        if changed:
            await self._audit.append("chat.approvals_enabled", user_id=user_id, by=by)
        return changed

    async def disable(self, user_id: str, *, by: str) -> bool:
        changed = await self._store.transaction(q.disable_approver, user_id)
        if changed:
            await self._audit.append("chat.approvals_disabled", user_id=user_id, by=by)
        return changed

    async def list(self) -> list[ApproverView]:
        found = []
        for approver in await self._store.call(q.list_approvers):
            found.append(ApproverView(approver.user_id, approver.enabled_by,
                                      approver.enabled_at,
                                      await self.is_owner(approver.user_id)))
        return found
