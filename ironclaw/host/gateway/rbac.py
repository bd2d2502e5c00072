"""Who may decide what: authenticated principals, their roles, and the gateway's errors.

A :class:`Principal` is what the API makes of a bearer token; the gateway never takes
a decider's name from a payload. Roles, from most to least powerful:

* ``owner`` and ``admin`` may approve every kind (by default);
* ``approver`` may approve only the kinds configured for it (by default persona,
  enabled_tools and wiring), and may reject anything;
* ``viewer`` may read, never submit, approve or reject, whatever the mapping says.

A change granting the ``owner`` role can only be approved by an owner.

A principal may be scoped to agent groups (``agent_groups``; None: every group). A
scoped principal may submit, approve and reject only changes of those groups; the
gateway refuses any other with Forbidden, whatever its roles say.

A principal may also be an owner speaking from a direct chat with the bot (chat
approvals, opt-in per owner): its ``via`` names the chat identity and the chat it
came from, its name is ``chat:<channel>:<handle>`` (a colon never appears in a token
principal's name, so the two can never be confused), and the gateway records ``via``
in the audit entry of the decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from ironclaw.contract.enums import ChangeKind

OWNER = "owner"
ADMIN = "admin"
APPROVER = "approver"
VIEWER = "viewer"
KNOWN_ROLES = frozenset({OWNER, ADMIN, APPROVER, VIEWER})
DECIDER_ROLES = frozenset({OWNER, ADMIN, APPROVER})

# Names the gateway itself writes as ``decided_by``; no principal may carry them.
SYSTEM_DECIDERS = frozenset({"verifier", "policy", "expiry", "auto", "system"})

_PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_GROUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CHAT_PREFIX = "chat:"
# A registry user id as the router builds it: ``<channel>:<handle>``, printable.
_CHAT_USER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}:[^\s:]{1,128}")
# Requesters that are not principals: ``session:<id>`` (a sandbox) or ``system:<what>``.
SYSTEM_REQUESTER = re.compile(r"(?:session|system):[A-Za-z0-9_.:-]{1,128}")

class GatewayError(Exception):
    """Base of everything the gateway refuses; the API maps each subclass to a code."""


class NoSuchChange(GatewayError, LookupError):
    """No change with that id (404)."""


class Conflict(GatewayError):
    """The change is not in a state that allows this step: already decided (409)."""


class StaleChange(Conflict):
    """The state changed since the change was submitted, or the verifiers now refuse
    it; it was rejected rather than applied to something the human did not see."""


class Forbidden(GatewayError):
    """The principal lacks the role for this step (403)."""


class InvalidChange(GatewayError, ValueError):
    """The request is not acceptable input: unknown kind, bad JSON, bad TTL (400/422)."""


class TooManyPending(GatewayError, ValueError):
    """The requester already has its quota of pending changes (429)."""


class GatewayUnavailable(GatewayError):
    """The gateway actor stopped before answering (503)."""


def _name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _PRINCIPAL_NAME.fullmatch(value):
        raise ValueError(f"invalid principal name {value!r:.70}")
    if value.lower() in SYSTEM_DECIDERS:
        raise ValueError(f"{value!r} is reserved for the gateway itself")


def _roles(value: Iterable[str]) -> frozenset[str]:
    roles = frozenset(value)
    unknown = roles - KNOWN_ROLES
    if unknown:
        raise ValueError(f"unknown role {sorted(unknown)[0]!r:.40}")
    return roles


def _scope(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    groups = frozenset(value)
    if not groups or not all(isinstance(g, str) and _GROUP_ID.fullmatch(g) for g in groups):
        raise ValueError("a scope names one or more agent group ids")
    return groups


@attrs.frozen
class ChatOrigin:
    """Where a chat decision came from: the owner's registry user id
    (``<channel>:<stable platform sender id>``, never a display name) and the chat."""

    user_id: str
    channel: str
    instance: str
    platform_id: str

    def __attrs_post_init__(self) -> None:
        if not is_chat_user_id(self.user_id):
            raise ValueError(f"invalid chat user id {self.user_id!r:.70}")
        if not self.user_id.startswith(f"{self.channel}:"):
            raise ValueError("a chat user id names the channel it came from")
        for value in (self.instance, self.platform_id):
            if not isinstance(value, str) or len(value) > 256 or not value.isprintable():
                raise ValueError("a chat instance or platform id is printable, <= 256")


def is_chat_user_id(value: object) -> bool:
    return isinstance(value, str) and _CHAT_USER.fullmatch(value) is not None \
        and value.isprintable()


def chat_principal_name(user_id: str) -> str:
    return CHAT_PREFIX + user_id


@attrs.frozen
class Principal:
    """An authenticated caller. Built by the API from a verified token, never from
    anything a request body says; or, with ``via``, by chat approvals from an owner's
    stable chat identity (see the module docstring)."""

    name: str = attrs.field()
    roles: frozenset[str] = attrs.field(converter=_roles)
    via: ChatOrigin | None = None
    # The agent groups whose changes it may submit and decide; None: every group.
    agent_groups: frozenset[str] | None = attrs.field(default=None, converter=_scope)

    def __attrs_post_init__(self) -> None:
        if self.via is None:
            _name(self, None, self.name)
        elif self.name != chat_principal_name(self.via.user_id):
            raise ValueError("a chat principal is named chat:<its chat user id>")

    @property
    def is_decider(self) -> bool:
        return bool(self.roles & DECIDER_ROLES)

    def covers(self, agent_group: str) -> bool:
        """Whether its scope includes ``agent_group``."""
        return self.agent_groups is None or agent_group in self.agent_groups


def out_of_scope(principal: Principal, agent_group: str) -> Forbidden:
    return Forbidden(f"{principal.name} is limited to agent group(s) "
                     f"{', '.join(sorted(principal.agent_groups or ()))}, not {agent_group}")


def approvable_kinds(principal: Principal, approvals: Mapping[str, frozenset[ChangeKind]]
                     ) -> frozenset[ChangeKind]:
    """The kinds this principal may approve. A viewer's entry is ignored, always."""
    kinds: frozenset[ChangeKind] = frozenset()
    for role in principal.roles & DECIDER_ROLES:
        kinds |= approvals.get(role, frozenset())
    return kinds


def may_approve(principal: Principal, kind: ChangeKind, *, grants_owner: bool,
                approvals: Mapping[str, frozenset[ChangeKind]]) -> bool:
    if kind not in approvable_kinds(principal, approvals):
        return False
    return OWNER in principal.roles or not grants_owner


def may_reject(principal: Principal) -> bool:
    return principal.is_decider


def may_submit(principal: Principal) -> bool:
    return principal.is_decider
