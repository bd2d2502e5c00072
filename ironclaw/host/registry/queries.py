"""The registry's SQL: plain functions over a host.db connection, run on the store's
thread. Each function is one unit of work; callers that need several in one
transaction compose them under ``HostStore.transaction``."""

from __future__ import annotations

import json
import secrets
from typing import Any

from ironclaw.contract.enums import (
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
    UnknownSenderPolicy,
)

from .model import (
    AccessLevel,
    AccessRequest,
    AccessRequestStatus,
    AgentGroup,
    ContainerStatus,
    MessagingGroup,
    NotFound,
    Persona,
    RegistryDestination,
    RegistryError,
    Role,
    RoleGrant,
    Session,
    SessionStatus,
    User,
    Wiring,
    partition_key,
)

Conn = Any


def _agent_group(row: tuple[Any, ...]) -> AgentGroup:
    (id_, name, folder, identity, soul, instructions, provider, model, tools, created,
     updated) = row
    return AgentGroup(id=id_, name=name, folder=folder, provider=provider, model=model,
                      persona=Persona(identity, soul, instructions),
                      enabled_tools=tuple(json.loads(tools)), created_at=created,
                      updated_at=updated)


_AG_COLUMNS = ("id, name, folder, persona_identity, persona_soul, persona_instructions, "
               "provider, model, enabled_tools, created_at, updated_at")


def put_agent_group(conn: Conn, group: AgentGroup, now: int) -> AgentGroup:
    conn.execute(
        f"INSERT INTO agent_groups ({_AG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, folder = excluded.folder, "
        "persona_identity = excluded.persona_identity, persona_soul = excluded.persona_soul, "
        "persona_instructions = excluded.persona_instructions, provider = excluded.provider, "
        "model = excluded.model, enabled_tools = excluded.enabled_tools, "
        "updated_at = excluded.updated_at",
        (group.id, group.name, group.folder, group.persona.identity, group.persona.soul,
         group.persona.instructions, group.provider, group.model,
         json.dumps(list(group.enabled_tools)), now, now))
    return get_agent_group(conn, group.id)


def get_agent_group(conn: Conn, group_id: str) -> AgentGroup:
    row = conn.execute(f"SELECT {_AG_COLUMNS} FROM agent_groups WHERE id = ?",
                       (group_id,)).fetchone()
    if row is None:
        raise NotFound(f"no agent group {group_id!r}")
    return _agent_group(row)


def list_agent_groups(conn: Conn) -> list[AgentGroup]:
    return [_agent_group(r) for r in conn.execute(
        f"SELECT {_AG_COLUMNS} FROM agent_groups ORDER BY id")]


_MG_COLUMNS = "id, channel, platform_id, instance, unknown_sender_policy, name, created_at"


def _messaging_group(row: tuple[Any, ...]) -> MessagingGroup:
    id_, channel, platform_id, instance, policy, name, created = row
    return MessagingGroup(id_, channel, platform_id, instance, UnknownSenderPolicy(policy),
                          name, created)


def find_messaging_group(conn: Conn, channel: str, platform_id: str, instance: str
                         ) -> MessagingGroup | None:
    row = conn.execute(
        f"SELECT {_MG_COLUMNS} FROM messaging_groups WHERE channel = ? AND platform_id = ? "
        "AND instance = ?", (channel, platform_id, instance or channel)).fetchone()
    return None if row is None else _messaging_group(row)


def ensure_messaging_group(conn: Conn, channel: str, platform_id: str, instance: str,
                           now: int) -> MessagingGroup:
    """Get or create, keyed on (channel, platform, instance). A group created this way
    starts ``strict``: nobody unknown gets in until an owner says otherwise."""
    instance = instance or channel
    conn.execute(
        f"INSERT OR IGNORE INTO messaging_groups ({_MG_COLUMNS}) VALUES (?, ?, ?, ?, ?, '', ?)",
        ("mg_" + secrets.token_hex(8), channel, platform_id, instance,
         UnknownSenderPolicy.STRICT.value, now))
    found = find_messaging_group(conn, channel, platform_id, instance)
    assert found is not None
    return found


def put_messaging_group(conn: Conn, group: MessagingGroup, now: int) -> MessagingGroup:
    conn.execute(
        f"INSERT INTO messaging_groups ({_MG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET unknown_sender_policy = excluded.unknown_sender_policy, "
        "name = excluded.name",
        (group.id, group.channel, group.platform_id, group.instance or group.channel,
         group.unknown_sender_policy.value, group.name, group.created_at or now))
    return get_messaging_group(conn, group.id)


def get_messaging_group(conn: Conn, group_id: str) -> MessagingGroup:
    row = conn.execute(f"SELECT {_MG_COLUMNS} FROM messaging_groups WHERE id = ?",
                       (group_id,)).fetchone()
    if row is None:
        raise NotFound(f"no messaging group {group_id!r}")
    return _messaging_group(row)


def list_messaging_groups(conn: Conn) -> list[MessagingGroup]:
    return [_messaging_group(r) for r in conn.execute(
        f"SELECT {_MG_COLUMNS} FROM messaging_groups ORDER BY id")]


_W_COLUMNS = ("id, messaging_group_id, agent_group_id, engage_mode, pattern, sender_scope, "
              "ignored_policy, session_mode, priority")


def _wiring(row: tuple[Any, ...]) -> Wiring:
    id_, mg, ag, engage, pattern, scope, ignored, mode, priority = row
    return Wiring(id=id_, messaging_group_id=mg, agent_group_id=ag,
                  engage_mode=EngageMode(engage), pattern=pattern,
                  sender_scope=SenderScope(scope), ignored_policy=IgnoredMessagePolicy(ignored),
                  session_mode=SessionMode(mode), priority=priority)


def put_wiring(conn: Conn, wiring: Wiring, now: int) -> Wiring:
    get_messaging_group(conn, wiring.messaging_group_id)
    get_agent_group(conn, wiring.agent_group_id)
    conn.execute(
        f"INSERT INTO wirings ({_W_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET engage_mode = excluded.engage_mode, "
        "pattern = excluded.pattern, sender_scope = excluded.sender_scope, "
        "ignored_policy = excluded.ignored_policy, session_mode = excluded.session_mode, "
        "priority = excluded.priority",
        (wiring.id, wiring.messaging_group_id, wiring.agent_group_id,
         wiring.engage_mode.value, wiring.pattern, wiring.sender_scope.value,
         wiring.ignored_policy.value, wiring.session_mode.value, wiring.priority, now))
    return wiring


def delete_wiring(conn: Conn, wiring_id: str) -> bool:
    return bool(conn.execute("DELETE FROM wirings WHERE id = ?", (wiring_id,)).rowcount)


def wirings_for(conn: Conn, messaging_group_id: str) -> list[Wiring]:
    """Highest priority first; ties broken by wiring id, ascending."""
    return [_wiring(r) for r in conn.execute(
        f"SELECT {_W_COLUMNS} FROM wirings WHERE messaging_group_id = ? "
        "ORDER BY priority DESC, id ASC", (messaging_group_id,))]


def put_user(conn: Conn, user: User, now: int) -> User:
    conn.execute("INSERT INTO users (id, display_name, created_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
                 (user.id, user.display_name, now))
    return user


def get_user(conn: Conn, user_id: str) -> User:
    row = conn.execute("SELECT id, display_name FROM users WHERE id = ?",
                       (user_id,)).fetchone()
    if row is None:
        raise NotFound(f"no user {user_id!r}")
    return User(*row)


def grant_role(conn: Conn, grant: RoleGrant, now: int) -> None:
    if grant.role is Role.OWNER and grant.scope is not None:
        raise RegistryError("the owner role is always global")
    conn.execute("INSERT OR IGNORE INTO roles (user_id, role, scope, granted_at) "
                 "VALUES (?, ?, ?, ?)", (grant.user_id, grant.role.value, grant.scope or "", now))


def revoke_role(conn: Conn, grant: RoleGrant) -> bool:
    return bool(conn.execute("DELETE FROM roles WHERE user_id = ? AND role = ? AND scope = ?",
                             (grant.user_id, grant.role.value, grant.scope or "")).rowcount)


def roles_of(conn: Conn, user_id: str) -> list[RoleGrant]:
    return [RoleGrant(u, Role(r), s or None) for u, r, s in conn.execute(
        "SELECT user_id, role, scope FROM roles WHERE user_id = ? ORDER BY role, scope",
        (user_id,))]


def owners(conn: Conn) -> list[str]:
    return [u for (u,) in conn.execute(
        "SELECT user_id FROM roles WHERE role = 'owner' ORDER BY user_id")]


def add_member(conn: Conn, user_id: str, agent_group_id: str, now: int) -> None:
    get_agent_group(conn, agent_group_id)
    conn.execute("INSERT OR IGNORE INTO members (user_id, agent_group_id, added_at) "
                 "VALUES (?, ?, ?)", (user_id, agent_group_id, now))


def remove_member(conn: Conn, user_id: str, agent_group_id: str) -> bool:
    return bool(conn.execute("DELETE FROM members WHERE user_id = ? AND agent_group_id = ?",
                             (user_id, agent_group_id)).rowcount)


def access_level(conn: Conn, user_id: str, agent_group_id: str) -> AccessLevel:
    level = AccessLevel.NONE
    for grant in roles_of(conn, user_id):
        if grant.role is Role.OWNER:
            return AccessLevel.OWNER
        if grant.role is Role.ADMIN and grant.scope is None:
            level = max(level, AccessLevel.GLOBAL_ADMIN)
        elif grant.role is Role.ADMIN and grant.scope == agent_group_id:
            level = max(level, AccessLevel.SCOPED_ADMIN)
    if level is AccessLevel.NONE and conn.execute(
            "SELECT 1 FROM members WHERE user_id = ? AND agent_group_id = ?",
            (user_id, agent_group_id)).fetchone():
        level = AccessLevel.MEMBER
    return level


_D_COLUMNS = ("agent_group_id, name, type, display_name, channel, instance, platform_id, "
              "target_agent_group_id")


def put_destination(conn: Conn, dest: RegistryDestination) -> None:
    get_agent_group(conn, dest.agent_group_id)
    conn.execute(f"INSERT OR REPLACE INTO destinations ({_D_COLUMNS}) VALUES "
                 "(?, ?, ?, ?, ?, ?, ?, ?)",
                 (dest.agent_group_id, dest.name, dest.type, dest.display_name, dest.channel,
                  dest.instance, dest.platform_id, dest.target_agent_group_id))


def remove_destination(conn: Conn, agent_group_id: str, name: str) -> bool:
    return bool(conn.execute("DELETE FROM destinations WHERE agent_group_id = ? AND name = ?",
                             (agent_group_id, name)).rowcount)


def destinations_for(conn: Conn, agent_group_id: str) -> list[RegistryDestination]:
    return [RegistryDestination(*r) for r in conn.execute(
        f"SELECT {_D_COLUMNS} FROM destinations WHERE agent_group_id = ? ORDER BY name",
        (agent_group_id,))]


_S_COLUMNS = ("id, agent_group_id, messaging_group_id, thread_id, mode, status, "
              "container_status, created_at, last_active")


def _session(row: tuple[Any, ...]) -> Session:
    id_, ag, mg, thread, mode, status, container, created, active = row
    return Session(id_, ag, mg, thread, SessionMode(mode), SessionStatus(status),
                   ContainerStatus(container), created, active)


def find_session(conn: Conn, agent_group_id: str, messaging_group_id: str,
                 thread_id: str | None, mode: SessionMode) -> Session | None:
    """Look up only: never creates."""
    row = conn.execute(f"SELECT {_S_COLUMNS} FROM sessions WHERE partition_key = ?",
                       (partition_key(mode, agent_group_id, messaging_group_id,
                                      thread_id),)).fetchone()
    return None if row is None else _session(row)


def resolve_session(conn: Conn, agent_group_id: str, messaging_group_id: str,
                    thread_id: str | None, mode: SessionMode, now: int) -> Session:
    """Find or create, and mark active now. The unique partition key makes two
    concurrent resolves land on one session."""
    if not agent_group_id or not messaging_group_id:
        raise RegistryError("resolving a session needs an agent group and a messaging group")
    key = partition_key(mode, agent_group_id, messaging_group_id, thread_id)
    conn.execute(
        f"INSERT OR IGNORE INTO sessions ({_S_COLUMNS}, partition_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("ses_" + secrets.token_hex(8), agent_group_id, messaging_group_id,
         thread_id if mode is SessionMode.PER_THREAD else None, mode.value,
         SessionStatus.ACTIVE.value, ContainerStatus.NEW.value, now, now, key))
    conn.execute("UPDATE sessions SET last_active = ?, status = 'active' "
                 "WHERE partition_key = ?", (now, key))
    row = conn.execute(f"SELECT {_S_COLUMNS} FROM sessions WHERE partition_key = ?",
                       (key,)).fetchone()
    return _session(row)


def get_session(conn: Conn, session_id: str) -> Session:
    row = conn.execute(f"SELECT {_S_COLUMNS} FROM sessions WHERE id = ?",
                       (session_id,)).fetchone()
    if row is None:
        raise NotFound(f"no session {session_id!r}")
    return _session(row)


def list_sessions(conn: Conn) -> list[Session]:
    return [_session(r) for r in conn.execute(
        f"SELECT {_S_COLUMNS} FROM sessions ORDER BY last_active DESC")]


def set_container_status(conn: Conn, session_id: str, status: ContainerStatus) -> None:
    if not conn.execute("UPDATE sessions SET container_status = ? WHERE id = ?",
                        (status.value, session_id)).rowcount:
        raise NotFound(f"no session {session_id!r}")


_A_COLUMNS = ("id, messaging_group_id, user_id, status, requested_at, decided_by, "
              "decided_at")


def _access(row: tuple[Any, ...]) -> AccessRequest:
    id_, mg, user, status, at, by, decided = row
    return AccessRequest(id_, mg, user, AccessRequestStatus(status), at, by, decided)


def request_access(conn: Conn, messaging_group_id: str, user_id: str, now: int
                   ) -> tuple[AccessRequest, bool]:
    """Raise a pending request, or return the one already pending. The flag says
    whether it is new (so owners are told once, not once per message)."""
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO access_requests ({_A_COLUMNS}) "
        "VALUES (?, ?, ?, 'pending', ?, NULL, NULL)",
        ("acc_" + secrets.token_hex(8), messaging_group_id, user_id, now))
    row = conn.execute(f"SELECT {_A_COLUMNS} FROM access_requests WHERE messaging_group_id = ? "
                       "AND user_id = ? AND status = 'pending'",
                       (messaging_group_id, user_id)).fetchone()
    return _access(row), bool(cursor.rowcount)


def list_access_requests(conn: Conn, status: AccessRequestStatus | None = None
                         ) -> list[AccessRequest]:
    if status is None:
        rows = conn.execute(f"SELECT {_A_COLUMNS} FROM access_requests ORDER BY requested_at")
    else:
        rows = conn.execute(f"SELECT {_A_COLUMNS} FROM access_requests WHERE status = ? "
                            "ORDER BY requested_at", (status.value,))
    return [_access(r) for r in rows]


def decide_access_request(conn: Conn, request_id: str, grant: bool, decided_by: str,
                          now: int) -> AccessRequest:
    """Granting makes the user a member of every agent group wired to the group."""
    row = conn.execute(f"SELECT {_A_COLUMNS} FROM access_requests WHERE id = ?",
                       (request_id,)).fetchone()
    if row is None:
        raise NotFound(f"no access request {request_id!r}")
    request = _access(row)
    if request.status is not AccessRequestStatus.PENDING:
        raise RegistryError(f"access request {request_id} is already {request.status}")
    status = AccessRequestStatus.GRANTED if grant else AccessRequestStatus.DENIED
    conn.execute("UPDATE access_requests SET status = ?, decided_by = ?, decided_at = ? "
                 "WHERE id = ?", (status.value, decided_by, now, request_id))
    if grant:
        for wiring in wirings_for(conn, request.messaging_group_id):
            add_member(conn, request.user_id, wiring.agent_group_id, now)
    return _access(conn.execute(f"SELECT {_A_COLUMNS} FROM access_requests WHERE id = ?",
                                (request_id,)).fetchone())


def group_with_wirings(conn: Conn, channel: str, platform_id: str, instance: str
                       ) -> tuple[MessagingGroup, list[Wiring]] | None:
    """A router's first look, in one call: the chat's group and its wirings (None if
    the group does not exist yet)."""
    group = find_messaging_group(conn, channel, platform_id, instance)
    return None if group is None else (group, wirings_for(conn, group.id))


def session_context(conn: Conn, session_id: str, agent_group_id: str
                    ) -> tuple[Session | None, MessagingGroup | None,
                               list[RegistryDestination]]:
    """What delivery needs of a session, in one call: the session, the chat it came
    from, and its agent group's destinations (the session's group when it exists)."""
    try:
        session: Session | None = get_session(conn, session_id)
    except NotFound:
        session = None
    group = None
    if session is not None:
        agent_group_id = session.agent_group_id
        if session.messaging_group_id is not None:
            try:
                group = get_messaging_group(conn, session.messaging_group_id)
            except NotFound:
                group = None
    return session, group, destinations_for(conn, agent_group_id)
