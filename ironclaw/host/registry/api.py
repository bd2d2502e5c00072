"""The registry as the rest of the control plane sees it: async, typed, durable.

Every method is one transaction on the store's thread. Writes here are the raw
mutations; what may call them (the gateway's applier, for anything that changes
what an agent is or may do) is decided by the callers, not here.
"""

from __future__ import annotations

from ironclaw.contract.clock import now_us
from ironclaw.contract.enums import SessionMode

from ..store import HostStore
from . import origins
from . import queries as q
from .model import (
    AccessLevel,
    AccessRequest,
    AccessRequestStatus,
    AgentGroup,
    ContainerStatus,
    MessagingGroup,
    RegistryDestination,
    RoleGrant,
    Session,
    SessionStatus,
    User,
    Wiring,
)
from .origins import InboundOrigin

TOUCH_INTERVAL_US = 60 * 1_000_000


class Registry:
    def __init__(self, store: HostStore) -> None:
        self._store = store

    # Agent groups
    async def put_agent_group(self, group: AgentGroup) -> AgentGroup:
        return await self._store.transaction(q.put_agent_group, group, now_us())

    async def get_agent_group(self, group_id: str) -> AgentGroup:
        return await self._store.call(q.get_agent_group, group_id)

    async def list_agent_groups(self) -> list[AgentGroup]:
        return await self._store.call(q.list_agent_groups)

    # Messaging groups and wirings
    async def ensure_messaging_group(self, channel: str, platform_id: str,
                                     instance: str = "") -> MessagingGroup:
        # Read first: nearly every message's group exists, and a read needs no fsync.
        found = await self._store.call(q.find_messaging_group, channel, platform_id, instance)
        if found is not None:
            return found
        return await self._store.transaction(q.ensure_messaging_group, channel, platform_id,
                                             instance, now_us())

    async def group_with_wirings(self, channel: str, platform_id: str, instance: str = ""
                                 ) -> tuple[MessagingGroup, list[Wiring]]:
        """``ensure_messaging_group`` and ``wirings_for`` in one read when the group
        exists (the router's first look at every message)."""
        found = await self._store.call(q.group_with_wirings, channel, platform_id, instance)
        if found is not None:
            return found
        group = await self.ensure_messaging_group(channel, platform_id, instance)
        return group, await self.wirings_for(group.id)

    async def session_context(self, session_id: str, agent_group_id: str
                              ) -> tuple[Session | None, MessagingGroup | None,
                                         list[RegistryDestination]]:
        """A session, the chat it came from and its agent group's destinations, in one
        read (see ``queries.session_context``)."""
        return await self._store.call(q.session_context, session_id, agent_group_id)

    async def find_messaging_group(self, channel: str, platform_id: str,
                                   instance: str = "") -> MessagingGroup | None:
        return await self._store.call(q.find_messaging_group, channel, platform_id, instance)

    async def put_messaging_group(self, group: MessagingGroup) -> MessagingGroup:
        return await self._store.transaction(q.put_messaging_group, group, now_us())

    async def get_messaging_group(self, group_id: str) -> MessagingGroup:
        return await self._store.call(q.get_messaging_group, group_id)

    async def list_messaging_groups(self) -> list[MessagingGroup]:
        return await self._store.call(q.list_messaging_groups)

    async def put_wiring(self, wiring: Wiring) -> Wiring:
        return await self._store.transaction(q.put_wiring, wiring, now_us())

    async def delete_wiring(self, wiring_id: str) -> bool:
        return await self._store.transaction(q.delete_wiring, wiring_id)

    async def wirings_for(self, messaging_group_id: str) -> list[Wiring]:
        return await self._store.call(q.wirings_for, messaging_group_id)

    # People and access
    async def put_user(self, user: User) -> User:
        return await self._store.transaction(q.put_user, user, now_us())

    async def get_user(self, user_id: str) -> User:
        return await self._store.call(q.get_user, user_id)

    async def grant_role(self, grant: RoleGrant) -> None:
        await self._store.transaction(q.grant_role, grant, now_us())

    async def revoke_role(self, grant: RoleGrant) -> bool:
        return await self._store.transaction(q.revoke_role, grant)

    async def roles_of(self, user_id: str) -> list[RoleGrant]:
        return await self._store.call(q.roles_of, user_id)

    async def owners(self) -> list[str]:
        return await self._store.call(q.owners)

    async def add_member(self, user_id: str, agent_group_id: str) -> None:
        await self._store.transaction(q.add_member, user_id, agent_group_id, now_us())

    async def remove_member(self, user_id: str, agent_group_id: str) -> bool:
        return await self._store.transaction(q.remove_member, user_id, agent_group_id)

    async def access_level(self, user_id: str, agent_group_id: str) -> AccessLevel:
        return await self._store.call(q.access_level, user_id, agent_group_id)

    async def request_access(self, messaging_group_id: str, user_id: str
                             ) -> tuple[AccessRequest, bool]:
        return await self._store.transaction(q.request_access, messaging_group_id, user_id,
                                             now_us())

    async def list_access_requests(self, status: AccessRequestStatus | None = None
                                   ) -> list[AccessRequest]:
        return await self._store.call(q.list_access_requests, status)

    async def decide_access_request(self, request_id: str, *, grant: bool, decided_by: str
                                    ) -> AccessRequest:
        return await self._store.transaction(q.decide_access_request, request_id, grant,
                                             decided_by, now_us())

    # Destinations
    async def put_destination(self, destination: RegistryDestination) -> None:
        await self._store.transaction(q.put_destination, destination)

    async def remove_destination(self, agent_group_id: str, name: str) -> bool:
        return await self._store.transaction(q.remove_destination, agent_group_id, name)

    async def destinations_for(self, agent_group_id: str) -> list[RegistryDestination]:
        return await self._store.call(q.destinations_for, agent_group_id)

    # Sessions
    async def find_session(self, agent_group_id: str, messaging_group_id: str,
                           thread_id: str | None, mode: SessionMode) -> Session | None:
        return await self._store.call(q.find_session, agent_group_id, messaging_group_id,
                                      thread_id, mode)

    async def resolve_session(self, agent_group_id: str, messaging_group_id: str,
                              thread_id: str | None, mode: SessionMode) -> Session:
        """Find or create, and mark active. ``last_active`` has a resolution of
        ``TOUCH_INTERVAL_US``: a session touched more recently is returned from a read,
        so a busy conversation does not pay an fsynced write per message."""
        now = now_us()
        found = await self._store.call(q.find_session, agent_group_id, messaging_group_id,
                                       thread_id, mode)
        if (found is not None and found.status is SessionStatus.ACTIVE
                and now - found.last_active < TOUCH_INTERVAL_US):
            return found
        return await self._store.transaction(q.resolve_session, agent_group_id,
                                             messaging_group_id, thread_id, mode, now)

    async def get_session(self, session_id: str) -> Session:
        return await self._store.call(q.get_session, session_id)

    async def list_sessions(self) -> list[Session]:
        return await self._store.call(q.list_sessions)

    async def set_container_status(self, session_id: str, status: ContainerStatus) -> None:
        await self._store.transaction(q.set_container_status, session_id, status)

    # Where inbound rows came from (threads and correlation of replies)
    async def record_origin(self, session_id: str, message_id: str,
                            origin: InboundOrigin) -> None:
        await self._store.transaction(origins.record_origin, session_id, message_id, origin,
                                      now_us())

    async def origin_of(self, session_id: str, message_id: str) -> InboundOrigin | None:
        return await self._store.call(origins.get_origin, session_id, message_id)
