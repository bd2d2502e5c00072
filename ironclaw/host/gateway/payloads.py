"""Payload grammars, one per change kind: the shape a change's ``after`` must have.

Everything here is structure (types, keys, counts, identifier grammars). Policy (which
host paths, package names, hosts, MCP servers) is the dedicated verifiers' job. The
appliers parse with the same functions, so what was verified is what is applied.
Unknown keys are refused, never ignored.

An ``after`` is the *desired state of the parts it names*; ``before`` is the current
state of the same parts, so the diff a human reads is exactly what will change:

* ``persona``: ``{"identity"?, "soul"?, "instructions"?}`` (at least one; merged);
* ``enabled_tools``: ``["tool", ...]`` or ``{"tools": [...]}`` (replaces the list);
* ``packages``: ``{"apt"?: [...], "pip"?: [...], "npm"?: [...]}`` (each named list replaced);
* ``mounts``: ``[{"source", "target"?, "readonly"?}, ...]`` (the whole set);
  ``target`` defaults to ``/mnt/<basename of source>``, ``readonly`` to true;
* ``egress``: ``{"hosts"?: [...], "destinations"?: {name: spec | null}}``;
* ``mcp_access``: ``{"servers": {server: [tool, ...]}}`` (the whole grant);
* ``wiring``: ``{"wiring"?, "messaging_group"?, "engage"?, "pattern"?, "sender_scope"?,
  "ignored_policy"?, "session_mode"?, "priority"?, "delete"?}``; no ``wiring`` id
  patches every wiring of the agent group;
* ``permissions``: ``{"grant"|"revoke": role, "member"|"user": id, "scope"?}`` or a list
  of those; or ``{"action", "payload"}`` for an action the contract does not know
  (recorded for a human, applies nothing);
* ``create_agent``: ``{"name", "folder", "provider"?, "model"?, "persona"?, "tools"?}``;
* ``access``: ``{"user", "member_of": [agent group, ...], "request"?, "messaging_group"?}``.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

import attrs

from ironclaw.contract.enums import (
    ChangeKind,
    EngageMode,
    IgnoredMessagePolicy,
    SenderScope,
    SessionMode,
)
from ironclaw.contract.jsonvalue import JSONValue


class PayloadError(ValueError):
    """The payload does not have its kind's shape."""


PERSONA_DOCS = ("identity", "soul", "instructions")
MANAGERS = ("apt", "pip", "npm")
ROLES = ("owner", "admin", "member", "viewer")  # viewer and member both mean membership
MAX_DOC_CHARS = 64 * 1024
MAX_TOOLS = 256
MAX_PACKAGES = 64
MAX_MOUNTS = 16
MAX_HOSTS = 256  # structural cap; the egress verifier applies the configured bound
MAX_DESTINATIONS = 64
MAX_SERVERS = 64
MAX_OPS = 16

ENTITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOOL = re.compile(r"[a-z][a-z0-9_]{0,63}")
USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@#+-]{0,127}")
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MCP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

WIRING_ENUMS: dict[str, Any] = {"engage": EngageMode, "sender_scope": SenderScope,
                                "ignored_policy": IgnoredMessagePolicy,
                                "session_mode": SessionMode}
WIRING_FIELDS = (*WIRING_ENUMS, "pattern", "priority")


def _obj(value: JSONValue, what: str, allowed: tuple[str, ...],
         required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise PayloadError(f"{what}: unknown key {unknown[0]!r:.40}")
    for key in required:
        if key not in value:
            raise PayloadError(f"{what}: missing {key!r}")
    return value


def _text(value: JSONValue, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{what} must be a string")
    if len(value) > max_chars:
        raise PayloadError(f"{what} is longer than {max_chars} characters")
    if any(ord(c) < 32 and c not in "\n\t\r" for c in value):
        raise PayloadError(f"{what} contains control characters")
    return value


def _ident(value: JSONValue, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PayloadError(f"{what}: invalid {value!r:.60}")
    return value


def _list(value: JSONValue, what: str, max_items: int, *, min_items: int = 0) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a list")
    if not min_items <= len(value) <= max_items:
        raise PayloadError(f"{what} must have {min_items} to {max_items} entries")
    return value


def _unique(items: list[str], what: str) -> tuple[str, ...]:
    if len(set(items)) != len(items):
        raise PayloadError(f"{what} lists an entry twice")
    return tuple(items)


def _strings(value: JSONValue, what: str, max_items: int, max_chars: int = 256,
             *, min_items: int = 0) -> tuple[str, ...]:
    items = _list(value, what, max_items, min_items=min_items)
    return _unique([_text(v, what, max_chars) for v in items], what)


def _bool(value: JSONValue, what: str) -> bool:
    if not isinstance(value, bool):
        raise PayloadError(f"{what} must be true or false")
    return value


def parse_persona(value: JSONValue, *, allow_empty: bool = False) -> dict[str, str]:
    obj = _obj(value, "persona", PERSONA_DOCS)
    if not obj and not allow_empty:
        raise PayloadError("persona names none of identity, soul, instructions")
    return {key: _text(doc, f"persona.{key}", MAX_DOC_CHARS) for key, doc in obj.items()}


@attrs.frozen
class ToolList:
    tools: tuple[str, ...]
    wrapped: bool  # given as {"tools": [...]}


def parse_tools(value: JSONValue) -> ToolList:
    wrapped = isinstance(value, dict)
    items = _obj(value, "enabled_tools", ("tools",), ("tools",))["tools"] if wrapped else value
    tools = _list(items, "enabled_tools", MAX_TOOLS)
    return ToolList(_unique([_ident(t, "tool", TOOL) for t in tools], "enabled_tools"),
                    wrapped)


def parse_packages(value: JSONValue) -> dict[str, tuple[str, ...]]:
    obj = _obj(value, "packages", MANAGERS)
    if not obj:
        raise PayloadError("packages names none of apt, pip, npm")
    return {manager: _strings(names, f"packages.{manager}", MAX_PACKAGES)
            for manager, names in obj.items()}


@attrs.frozen
class Mount:
    source: str
    target: str
    readonly: bool


def parse_mounts(value: JSONValue) -> tuple[Mount, ...]:
    mounts = []
    for item in _list(value, "mounts", MAX_MOUNTS):
        obj = _obj(item, "mount", ("source", "target", "readonly"), ("source",))
        source = _text(obj["source"], "mount source", 4096)
        target = (_text(obj["target"], "mount target", 4096) if "target" in obj
                  else "/mnt/" + posixpath.basename(source))
        mounts.append(Mount(source, target, _bool(obj.get("readonly", True), "readonly")))
    return tuple(mounts)


@attrs.frozen
class GrantedDestination:
    type: str  # "channel" | "agent"
    display_name: str | None = None
    channel: str | None = None
    instance: str | None = None
    platform_id: str | None = None
    target_agent_group: str | None = None

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


_DEST_KEYS = ("type", "display_name", "channel", "instance", "platform_id",
              "target_agent_group")


def _destination(value: JSONValue, what: str) -> GrantedDestination:
    obj = _obj(value, what, _DEST_KEYS, ("type",))
    fields = {k: _text(v, f"{what}.{k}", 256) for k, v in obj.items()}
    dest = GrantedDestination(**fields)
    if dest.type == "channel":
        if not dest.channel or not dest.platform_id or dest.target_agent_group:
            raise PayloadError(f"{what}: a channel destination names channel and platform_id")
    elif dest.type == "agent":
        if dest.target_agent_group is None or dest.channel or dest.platform_id:
            raise PayloadError(f"{what}: an agent destination names target_agent_group only")
        _ident(dest.target_agent_group, f"{what}.target_agent_group", ENTITY_ID)
    else:
        raise PayloadError(f"{what}: type is channel or agent")
    return dest


@attrs.frozen
class EgressPatch:
    hosts: tuple[str, ...] | None
    destinations: dict[str, GrantedDestination | None] | None  # None value: remove


def parse_egress(value: JSONValue) -> EgressPatch:
    obj = _obj(value, "egress", ("hosts", "destinations"))
    if not obj:
        raise PayloadError("egress names neither hosts nor destinations")
    hosts = _strings(obj["hosts"], "egress.hosts", MAX_HOSTS) if "hosts" in obj else None
    destinations = None
    if "destinations" in obj:
        raw = obj["destinations"]
        if not isinstance(raw, dict) or len(raw) > MAX_DESTINATIONS:
            raise PayloadError(f"egress.destinations is an object of at most "
                               f"{MAX_DESTINATIONS} names")
        destinations = {
            _ident(name, "destination name", SLUG):
                None if spec is None else _destination(spec, f"destination {name}")
            for name, spec in raw.items()}
    return EgressPatch(hosts, destinations)


def parse_mcp_access(value: JSONValue) -> dict[str, tuple[str, ...]]:
    servers = _obj(value, "mcp_access", ("servers",), ("servers",))["servers"]
    if not isinstance(servers, dict) or len(servers) > MAX_SERVERS:
        raise PayloadError(f"mcp_access.servers is an object of at most {MAX_SERVERS} servers")
    grant = {}
    for server, tools in servers.items():
        _ident(server, "MCP server", MCP_NAME)
        items = _list(tools, f"tools of {server}", MAX_TOOLS, min_items=1)
        grant[server] = _unique([_ident(t, "MCP tool", MCP_NAME) for t in items], server)
    return grant


@attrs.frozen
class WiringPatch:
    wiring: str | None  # None: every wiring of the agent group
    messaging_group: str | None
    fields: dict[str, str | int]
    delete: bool


def parse_wiring(value: JSONValue) -> WiringPatch:
    obj = _obj(value, "wiring", ("wiring", "messaging_group", "delete", *WIRING_FIELDS))
    wiring = _ident(obj["wiring"], "wiring id", ENTITY_ID) if "wiring" in obj else None
    group = (_ident(obj["messaging_group"], "messaging group", ENTITY_ID)
             if "messaging_group" in obj else None)
    delete = _bool(obj.get("delete", False), "delete")
    fields: dict[str, str | int] = {}
    for key, enum in WIRING_ENUMS.items():
        if key in obj:
            if obj[key] not in {m.value for m in enum}:
                raise PayloadError(f"wiring.{key}: invalid {obj[key]!r:.40}")
            fields[key] = obj[key]
    if "pattern" in obj:
        fields["pattern"] = _text(obj["pattern"], "wiring.pattern", 1024)
    if "priority" in obj:
        priority = obj["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1000:
            raise PayloadError("wiring.priority is an integer from -1000 to 1000")
        fields["priority"] = priority
    if delete and (wiring is None or fields or group):
        raise PayloadError("deleting names one wiring and nothing else")
    if not delete and not fields and group is None:
        raise PayloadError("the wiring change changes nothing")
    if group is not None and wiring is None:
        raise PayloadError("a wiring for a messaging group needs a wiring id")
    return WiringPatch(wiring, group, fields, delete)


@attrs.frozen
class PermissionOp:
    grant: bool  # False: revoke
    role: str
    user: str
    user_key: str  # "member" or "user", as written
    global_scope: bool


@attrs.frozen
class OpaqueAction:
    """An action the contract does not know: shown to a human, never executed."""

    action: str
    payload: JSONValue


def parse_permissions(value: JSONValue) -> tuple[PermissionOp, ...] | OpaqueAction:
    if isinstance(value, dict) and "action" in value:
        obj = _obj(value, "permissions", ("action", "payload"), ("action", "payload"))
        return OpaqueAction(_text(obj["action"], "action", 64), obj["payload"])
    items = value if isinstance(value, list) else [value]
    ops = []
    for item in _list(items, "permissions", MAX_OPS, min_items=1):
        obj = _obj(item, "permission", ("grant", "revoke", "member", "user", "scope"))
        verbs = [k for k in ("grant", "revoke") if k in obj]
        users = [k for k in ("member", "user") if k in obj]
        if len(verbs) != 1 or len(users) != 1:
            raise PayloadError("a permission names one of grant/revoke and one of member/user")
        role = obj[verbs[0]]
        if role not in ROLES:
            raise PayloadError(f"unknown role {role!r:.40}")
        scope = obj.get("scope", "global" if role == "owner" else "group")
        if scope not in ("group", "global") or (role == "owner" and scope != "global"):
            raise PayloadError("scope is group or global; owner is always global")
        if role in ("member", "viewer") and scope != "group":
            raise PayloadError("membership is always of this agent group")
        ops.append(PermissionOp(verbs[0] == "grant", role,
                                _ident(obj[users[0]], "user", USER), users[0],
                                scope == "global"))
    return tuple(ops)


@attrs.frozen
class NewAgent:
    name: str
    folder: str
    provider: str | None
    model: str | None
    persona: dict[str, str]
    tools: tuple[str, ...]


def parse_create_agent(value: JSONValue) -> NewAgent:
    obj = _obj(value, "create_agent", ("name", "folder", "provider", "model", "persona",
                                       "tools"), ("name", "folder"))
    tools = parse_tools(obj["tools"]).tools if "tools" in obj else ()
    persona = parse_persona(obj["persona"], allow_empty=True) if "persona" in obj else {}
    return NewAgent(_text(obj["name"], "name", 64), _text(obj["folder"], "folder", 64),
                    _text(obj["provider"], "provider", 128) if "provider" in obj else None,
                    _text(obj["model"], "model", 128) if "model" in obj else None,
                    persona, tools)


@attrs.frozen
class AccessGrant:
    user: str
    member_of: tuple[str, ...]
    request: str | None
    messaging_group: str | None


def parse_access(value: JSONValue) -> AccessGrant:
    obj = _obj(value, "access", ("user", "member_of", "request", "messaging_group"),
               ("user", "member_of"))
    groups = _list(obj["member_of"], "member_of", 64, min_items=1)
    return AccessGrant(
        _ident(obj["user"], "user", USER),
        _unique([_ident(g, "agent group", ENTITY_ID) for g in groups], "member_of"),
        _ident(obj["request"], "request", ENTITY_ID) if "request" in obj else None,
        _ident(obj["messaging_group"], "messaging group", ENTITY_ID)
        if "messaging_group" in obj else None)


PARSERS: dict[ChangeKind, Any] = {
    ChangeKind.PERSONA: parse_persona,
    ChangeKind.ENABLED_TOOLS: parse_tools,
    ChangeKind.PACKAGES: parse_packages,
    ChangeKind.MOUNTS: parse_mounts,
    ChangeKind.EGRESS: parse_egress,
    ChangeKind.MCP_ACCESS: parse_mcp_access,
    ChangeKind.WIRING: parse_wiring,
    ChangeKind.PERMISSIONS: parse_permissions,
    ChangeKind.CREATE_AGENT: parse_create_agent,
    ChangeKind.ACCESS: parse_access,
}


def parse_payload(kind: ChangeKind, value: JSONValue) -> object:
    """The typed form of ``value`` for ``kind``; raises :class:`PayloadError`."""
    return PARSERS[kind](value)


def grants_owner(kind: ChangeKind, value: JSONValue) -> bool:
    if kind is not ChangeKind.PERMISSIONS:
        return False
    try:
        parsed = parse_permissions(value)
    except PayloadError:
        return False
    return not isinstance(parsed, OpaqueAction) and any(
        op.grant and op.role == "owner" for op in parsed)
