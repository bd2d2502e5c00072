"""``connect_chat``: ``{"channel", "instance"?, "chat", "engage"?, "pattern"?, "members"?,
"unknown_sender_policy"?}``, connecting one chat to the agent group in one approval: the
messaging group is created if the chat has never written (the router's first message
then finds it), wired to the group (or its wiring updated), the members granted and the
chat's unknown-sender policy set, all in the apply's one transaction.

``engage`` defaults to ``pattern`` with the pattern ``.`` (every message); naming
``engage: pattern`` asks for a ``pattern`` too. ``members`` are handles on the chat's
channel (``alice``) or user ids of it (``webhook:alice``). Without
``unknown_sender_policy`` the chat keeps its policy (``strict`` for a new one)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import attrs
import re2

from ironclaw.contract.enums import ChangeKind, EngageMode, UnknownSenderPolicy
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import MessagingGroup, Wiring
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..payloads import (
    ENTITY_ID,
    USER,
    PayloadError,
    expect_ident,
    expect_list,
    expect_object,
    expect_text,
    unique,
)
from .base import ApplyError, ApplyJob, ChangeContext, ChangeKindSpec, Conn

if TYPE_CHECKING:
    from ..config import GatewayConfig

FIELDS = ("channel", "instance", "chat", "engage", "pattern", "members",
          "unknown_sender_policy")
MATCH_ANYTHING = "."
MAX_CHAT_CHARS = 200
MAX_PATTERN_CHARS = 1024
MAX_MEMBERS = 64


@attrs.frozen
class ConnectChat:
    channel: str
    instance: str  # never empty: the channel's name when the payload names none
    chat: str
    engage: EngageMode
    pattern: str
    members: tuple[str, ...]  # user ids, <channel>:<handle>
    policy: UnknownSenderPolicy | None  # None: keep the chat's


def _member(channel: str, value: JSONValue) -> str:
    text = expect_ident(value, "member", USER)
    if ":" not in text:
        return f"{channel}:{text}"
    if not text.startswith(f"{channel}:") or text.count(":") > 1:
        raise PayloadError(f"member {text!r:.60} is not a user of channel {channel!r}")
    return text


def _engagement(obj: dict[str, JSONValue]) -> tuple[EngageMode, str]:
    engage = obj.get("engage", EngageMode.PATTERN.value)
    if engage not in {m.value for m in EngageMode}:
        raise PayloadError(f"engage is one of {', '.join(m.value for m in EngageMode)}")
    mode = EngageMode(engage)
    if "pattern" not in obj:
        if "engage" in obj and mode is EngageMode.PATTERN:
            raise PayloadError("engage pattern needs a pattern")
        return mode, MATCH_ANYTHING
    if mode is not EngageMode.PATTERN:
        raise PayloadError(f"a pattern is for engage pattern, not {mode.value}")
    pattern = expect_text(obj["pattern"], "pattern", MAX_PATTERN_CHARS)
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error:
        raise PayloadError(f"pattern {pattern!r:.60} is not a valid RE2 expression") from None
    return mode, pattern


def parse_connect_chat(value: JSONValue) -> ConnectChat:
    obj = expect_object(value, "connect_chat", FIELDS, ("channel", "chat"))
    channel = expect_ident(obj["channel"], "channel", ENTITY_ID)
    instance = expect_ident(obj.get("instance", channel), "instance", ENTITY_ID)
    chat = expect_text(obj["chat"], "chat", MAX_CHAT_CHARS)
    if not chat.strip():
        raise PayloadError("chat is empty")
    engage, pattern = _engagement(obj)
    members = unique([_member(channel, m) for m in expect_list(
        obj.get("members", []), "members", MAX_MEMBERS)], "members")
    policy = obj.get("unknown_sender_policy")
    if policy is not None and policy not in {p.value for p in UnknownSenderPolicy}:
        raise PayloadError(f"unknown_sender_policy is one of "
                           f"{', '.join(p.value for p in UnknownSenderPolicy)}")
    return ConnectChat(channel, instance, chat, engage, pattern, members,
                       None if policy is None else UnknownSenderPolicy(policy))


def wiring_id(messaging_group: str, agent_group: str) -> str:
    """The wiring a connect creates: one per chat and agent group, so connecting a
    chat again updates it instead of adding a second."""
    digest = hashlib.sha256(f"{messaging_group}\0{agent_group}".encode()).hexdigest()
    return "wc_" + digest[:24]


def _chat(conn: Conn, wanted: ConnectChat) -> MessagingGroup | None:
    return q.find_messaging_group(conn, wanted.channel, wanted.chat, wanted.instance)


def _own_wiring(conn: Conn, chat: MessagingGroup, group: str) -> Wiring | None:
    return next((w for w in q.wirings_for(conn, chat.id) if w.agent_group_id == group), None)


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    """Nothing for a chat that has never written (the diff then lists every field as
    added); otherwise what the chat, its wiring to this group and its members are now,
    in the payload's shape."""
    wanted = parse_connect_chat(after)
    chat = _chat(conn, wanted)
    if chat is None:
        return {}
    named = after if isinstance(after, dict) else {}
    before: dict[str, JSONValue] = {k: named[k] for k in ("channel", "instance", "chat")
                                    if k in named}
    wiring = _own_wiring(conn, chat, group)
    if wiring is not None:
        before["engage"] = wiring.engage_mode.value
        if "pattern" in named:
            before["pattern"] = wiring.pattern
    if "members" in named:
        listed = named["members"] if isinstance(named["members"], list) else []
        before["members"] = [m for m, user in zip(listed, wanted.members, strict=True)
                             if g.is_member(conn, user, group)]
    if "unknown_sender_policy" in named:
        before["unknown_sender_policy"] = chat.unknown_sender_policy.value
    return before


@attrs.frozen
class ConnectFacts:
    policy: UnknownSenderPolicy | None = None  # the chat's, if it exists
    wired_elsewhere: tuple[str, ...] = ()  # other agent groups wired to the chat


def read_facts(conn: Conn, group: str, after: JSONValue) -> ConnectFacts:
    try:
        chat = _chat(conn, parse_connect_chat(after))
    except PayloadError:
        return ConnectFacts()
    if chat is None:
        return ConnectFacts()
    return ConnectFacts(chat.unknown_sender_policy, tuple(
        w for w in g.wired_agent_groups(conn, chat.id) if w != group))


def unknown_channel(wanted: ConnectChat, config: GatewayConfig) -> str | None:
    known = config.channels
    if known is None or (wanted.channel, wanted.instance) in known:
        return None
    names = ", ".join(sorted(c if c == i else f"{c}:{i}" for c, i in known)) or "none"
    named = (wanted.channel if wanted.instance == wanted.channel
             else f"{wanted.channel}:{wanted.instance}")
    return f"unknown channel {named!r:.80} (configured: {names})"


def check_shape(change: ChangeRequest, wanted: ConnectChat, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del change
    facts = context.facts if isinstance(context.facts, ConnectFacts) else ConnectFacts()
    if (wanted.policy is not None and facts.wired_elsewhere
            and wanted.policy is not facts.policy):
        return ("the chat is also wired to another agent group: its policy is changed "
                "with chat_policy")
    return unknown_channel(wanted, config)


def apply(job: ApplyJob) -> int:
    wanted = parse_connect_chat(job.after)
    if (reason := unknown_channel(wanted, job.config)) is not None:
        raise ApplyError(reason)
    chat = q.ensure_messaging_group(job.conn, wanted.channel, wanted.chat, wanted.instance,
                                    job.now)
    if wanted.policy is not None and wanted.policy is not chat.unknown_sender_policy:
        if any(w != job.group for w in g.wired_agent_groups(job.conn, chat.id)):
            raise ApplyError("the chat is also wired to another agent group")
        q.put_messaging_group(job.conn, attrs.evolve(
            chat, unknown_sender_policy=wanted.policy), job.now)
    existing = _own_wiring(job.conn, chat, job.group)
    wiring = (attrs.evolve(existing, engage_mode=wanted.engage, pattern=wanted.pattern)
              if existing is not None else
              Wiring(id=wiring_id(chat.id, job.group), messaging_group_id=chat.id,
                     agent_group_id=job.group, engage_mode=wanted.engage,
                     pattern=wanted.pattern))
    q.put_wiring(job.conn, wiring, job.now)
    for user in wanted.members:
        q.add_member(job.conn, user, job.group, job.now)
    return 2 + len(wanted.members)


SPEC = ChangeKindSpec(
    kind=ChangeKind.CONNECT_CHAT, parse=parse_connect_chat, read_before=read_before,
    apply=apply, read_facts=read_facts, check_shape=check_shape)
