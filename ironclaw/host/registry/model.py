"""Registry entities: who the agents are, where they listen, who may talk to them."""

from __future__ import annotations

import enum
import re

import attrs

from ironclaw.contract.enums import (
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
    UnknownSenderPolicy,
)

_ENTITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FOLDER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TOOL = re.compile(r"[a-z][a-z0-9_]{0,63}")


class RegistryError(ValueError):
    """Invalid registry input, or a reference to something that does not exist."""


class NotFound(LookupError):
    pass


def entity_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ENTITY_ID.fullmatch(value):
        raise RegistryError(f"invalid {what} id: {value!r:.70}")
    return value


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"


class AccessLevel(enum.IntEnum):
    """Highest first wins: owner > global admin > scoped admin > member > none."""

    NONE = 0
    MEMBER = 1
    SCOPED_ADMIN = 2
    GLOBAL_ADMIN = 3
    OWNER = 4


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class ContainerStatus(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"
    PARKED = "parked"


class AccessRequestStatus(enum.StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"


@attrs.frozen
class Persona:
    """Three documents, kept apart so a change to one shows as a diff of one."""

    identity: str = ""
    soul: str = ""
    instructions: str = ""


@attrs.frozen
class AgentGroup:
    id: str = attrs.field(validator=lambda _s, _a, v: entity_id(v, "agent group"))
    name: str = attrs.field()
    folder: str = attrs.field()
    provider: str = "mock"
    model: str = "mock"
    persona: Persona = Persona()
    enabled_tools: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    created_at: int = 0
    updated_at: int = 0

    @name.validator
    def _name(self, _attribute: object, value: str) -> None:
        if not value or len(value) > 64 or not value.isprintable():
            raise RegistryError("an agent group name is 1-64 printable characters")

    @folder.validator
    def _folder(self, _attribute: object, value: str) -> None:
        if not _FOLDER.fullmatch(value):
            raise RegistryError("a folder is lowercase letters, digits, _ and -")

    @enabled_tools.validator
    def _tools(self, _attribute: object, value: tuple[str, ...]) -> None:
        for tool in value:
            if not _TOOL.fullmatch(tool):
                raise RegistryError(f"invalid tool name {tool!r:.40}")


@attrs.frozen
class MessagingGroup:
    id: str
    channel: str
    platform_id: str
    instance: str
    unknown_sender_policy: UnknownSenderPolicy = UnknownSenderPolicy.STRICT
    name: str = ""
    created_at: int = 0


@attrs.frozen
class Wiring:
    id: str = attrs.field(validator=lambda _s, _a, v: entity_id(v, "wiring"))
    messaging_group_id: str = attrs.field()
    agent_group_id: str = attrs.field()
    engage_mode: EngageMode = EngageMode.PATTERN
    pattern: str = "."
    sender_scope: SenderScope = SenderScope.ALL
    ignored_policy: IgnoredMessagePolicy = IgnoredMessagePolicy.DROP
    session_mode: SessionMode = SessionMode.SHARED
    priority: int = 0


@attrs.frozen
class User:
    id: str
    display_name: str = ""


@attrs.frozen
class RoleGrant:
    user_id: str
    role: Role
    scope: str | None = None  # an agent group id; None is global (owners are always global)


@attrs.frozen
class RegistryDestination:
    agent_group_id: str
    name: str
    type: str  # "channel" or "agent"
    display_name: str | None = None
    channel: str | None = None
    instance: str | None = None
    platform_id: str | None = None
    target_agent_group_id: str | None = None


@attrs.frozen
class Session:
    id: str
    agent_group_id: str
    messaging_group_id: str | None
    thread_id: str | None
    mode: SessionMode
    status: SessionStatus
    container_status: ContainerStatus
    created_at: int
    last_active: int


@attrs.frozen
class AccessRequest:
    id: str
    messaging_group_id: str
    user_id: str
    status: AccessRequestStatus
    requested_at: int
    decided_by: str | None = None
    decided_at: int | None = None


def namespace_user(channel: str, handle: str) -> str:
    """``<channel>:<handle>``, with the handle cut at its first colon, so a sender on
    one platform can never present itself as ``other:owner``."""
    channel = channel.strip()
    handle = handle.strip().split(":", 1)[0].strip()
    return f"{channel}:{handle}"


def partition_key(mode: SessionMode, agent_group_id: str, messaging_group_id: str,
                  thread_id: str | None) -> str:
    """Which messages share one session. Only per-thread mode keys on the thread."""
    if mode is SessionMode.AGENT_SHARED:
        return f"agent-shared|{agent_group_id}"
    if mode is SessionMode.PER_THREAD:
        return f"per-thread|{agent_group_id}|{messaging_group_id}|{thread_id or ''}"
    return f"shared|{agent_group_id}|{messaging_group_id}"
