"""What a principal scoped to agent groups may read: every route declares a
:class:`Scope`, and the objects of a scoped route are shown through a
:class:`Visibility`, which says whether one is about the principal's groups.

A principal without a scope sees everything. A scoped one sees the sessions, changes,
tasks, questions, audit entries and events about its groups, and the chats wired to
them; another group's object answers 404 exactly as one that does not exist would, so
a scope does not leak what exists outside it. Anything whose agent group cannot be
told is hidden from it (fail closed).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

import attrs

from ironclaw.host.gateway import Principal
from ironclaw.host.registry import NotFound

from .errors import ApiError

if TYPE_CHECKING:
    from ironclaw.host.app import ControlPlaneHandles

F = TypeVar("F", bound=Callable[..., object])
T = TypeVar("T")
SCOPE_ATTR = "_ironclaw_scope"


class Scope(enum.Enum):
    NONE = "none"  # about no agent group: probes, whoami, the OpenAPI document
    FILTERED = "filtered"  # shows a scoped principal only what is about its groups
    UNSCOPED = "unscoped"  # about the whole plane: refused (403) to a scoped principal


def scope(decision: Scope) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        setattr(fn, SCOPE_ATTR, decision)
        return fn
    return mark


def scope_of(view: object) -> Scope | None:
    """The route's decision; None for a route that made none (the guard then treats
    it as UNSCOPED, and the route-table test fails)."""
    found = getattr(view, SCOPE_ATTR, None)
    return found if isinstance(found, Scope) else None


def refuse_unscoped(who: Principal, decision: Scope | None) -> None:
    if who.agent_groups is not None and decision in (None, Scope.UNSCOPED):
        raise ApiError(403, f"{who.name} is scoped to agent groups; this view is about "
                            "the whole control plane")


# Fields that tie an audit entry or an event to an agent group, most direct first.
_GROUP_FIELDS = ("agent_group_id", "agent_group")


@attrs.define
class Visibility:
    """One request's (or one stream's) view: which objects its principal may see.
    Lookups are cached, since a stream asks again for every event of a session."""

    groups: frozenset[str] | None  # None: everything
    handles: ControlPlaneHandles
    _session_groups: dict[str, str] = attrs.field(factory=dict)
    _change_groups: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def of(cls, who: Principal, handles: ControlPlaneHandles) -> Visibility:
        return cls(who.agent_groups, handles)

    @property
    def everything(self) -> bool:
        return self.groups is None

    def group(self, agent_group: object) -> bool:
        return self.groups is None or (isinstance(agent_group, str)
                                       and agent_group in self.groups)

    def only(self, items: Iterable[T], group_of: Callable[[T], object]) -> list[T]:
        return [item for item in items if self.group(group_of(item))]

    async def session(self, session_id: object) -> bool:
        return await self._cached(self._session_groups, session_id, self._session_group)

    async def change(self, change_id: object) -> bool:
        return await self._cached(self._change_groups, change_id, self._change_group)

    async def _cached(self, cache: dict[str, str], key: object,
                      lookup: Callable[[str], Awaitable[str | None]]) -> bool:
        """Whether the thing ``key`` names is about one of the groups; a thing's group
        never changes, so it is looked up once (one not found is not cached: it may
        exist later)."""
        if self.groups is None:
            return True
        if not isinstance(key, str):
            return False
        if key not in cache:
            found = await lookup(key)
            if found is None:
                return False
            cache[key] = found
        return self.group(cache[key])

    async def _session_group(self, session_id: str) -> str | None:
        try:
            return (await self.handles.registry.get_session(session_id)).agent_group_id
        except NotFound:
            return None

    async def _change_group(self, change_id: str) -> str | None:
        try:
            return (await self.handles.gateway.get(change_id)).change.agent_group
        except LookupError:
            return None

    async def chat(self, messaging_group_id: object) -> bool:
        """A chat is visible when it is wired to one of the principal's groups."""
        if self.groups is None:
            return True
        if not isinstance(messaging_group_id, str):
            return False
        wirings = await self.handles.registry.wirings_for(messaging_group_id)
        return any(self.group(w.agent_group_id) for w in wirings)

    async def fields(self, fields: Mapping[str, object]) -> bool:
        """An audit entry's or an event's fields: about one of the groups?"""
        if self.groups is None:
            return True
        for key in _GROUP_FIELDS:
            if fields.get(key) is not None:
                return self.group(fields[key])
        if fields.get("session_id") is not None:
            return await self.session(fields["session_id"])
        if fields.get("change_id") is not None:
            return await self.change(fields["change_id"])
        if fields.get("messaging_group_id") is not None:
            return await self.chat(fields["messaging_group_id"])
        return False

    async def event(self, event: object) -> bool:
        """The small check the event stream makes per event."""
        if self.groups is None:
            return True
        names = ("agent_group_id", "agent_group", "session_id", "change_id",
                 "messaging_group_id")
        return await self.fields({name: getattr(event, name, None) for name in names})


def hidden(detail: str) -> ApiError:
    """The 404 a hidden object answers: the same words as a missing one."""
    return ApiError(404, detail)
