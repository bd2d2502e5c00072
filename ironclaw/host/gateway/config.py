"""The gateway's configuration, and the rules no configuration can loosen."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from ironclaw.contract.enums import ChangeKind

from .kinds import CHANGE_KINDS, ChangeKinds
from .payloads import is_canonical_abs_path
from .rbac import ADMIN, APPROVER, KNOWN_ROLES, OWNER

# Never approved by policy, whatever the configuration says: these widen what an agent
# can reach (other agents, host paths, people, the network). Enforced twice: the
# configuration refuses them, and the gateway re-checks every policy approval. Each
# kind's module says whether it may be (``ChangeKindSpec.auto_approvable``).
NEVER_AUTO_APPROVE = CHANGE_KINDS.never_auto_approved()

# Kinds whose apply changes what a running sandbox was started with.
RESPAWN_KINDS = CHANGE_KINDS.respawning()

# Who may approve what, unless the configuration says otherwise: owners and admins
# every kind, approvers the kinds whose modules allow it.
DEFAULT_APPROVALS: Mapping[str, frozenset[ChangeKind]] = {
    OWNER: frozenset(CHANGE_KINDS),
    ADMIN: frozenset(CHANGE_KINDS),
    APPROVER: CHANGE_KINDS.approver_kinds(),
}

RESERVED_AGENT_NAMES = frozenset({
    "admin", "agent", "agents", "all", "api", "audit", "default", "gateway", "host",
    "ironclaw", "keys", "mounts", "none", "owner", "policy", "queue", "root", "run",
    "sandbox", "session", "sessions", "state", "system", "tmp", "verifier", "workspace",
})

DAY = 24 * 3600


def _root_path(_instance: object, _attribute: object, value: str) -> None:
    if not is_canonical_abs_path(value) or value == "/":
        raise ValueError(f"a mount root is a canonical absolute path below /: {value!r:.80}")


@attrs.frozen
class MountRoot:
    """Host directories mounts may come from. Read-only unless ``writable``."""

    path: str = attrs.field(validator=_root_path)
    writable: bool = False


def _roots(value: Iterable[MountRoot]) -> tuple[MountRoot, ...]:
    return tuple(value)


def _kinds(value: Iterable[ChangeKind | str]) -> frozenset[ChangeKind]:
    return frozenset(ChangeKind(v) for v in value)


def _no_privileged_auto(instance: GatewayConfig, _attribute: object,
                        value: frozenset[ChangeKind]) -> None:
    forbidden = sorted(k.value for k in value & instance.kinds.never_auto_approved())
    if forbidden:
        raise ValueError(f"auto-approval can never cover {', '.join(forbidden)}")


def _approvals(value: Mapping[str, Iterable[ChangeKind | str]]
               ) -> dict[str, frozenset[ChangeKind]]:
    unknown = set(value) - KNOWN_ROLES
    if unknown:
        raise ValueError(f"unknown role {sorted(unknown)[0]!r:.40}")
    return {role: _kinds(kinds) for role, kinds in value.items()}


def _catalog(value: Mapping[str, Iterable[str] | None]) -> dict[str, frozenset[str] | None]:
    return {server: None if tools is None else frozenset(tools)
            for server, tools in value.items()}


def _not_auto_approved(instance: GatewayConfig, _attribute: object,
                       value: frozenset[ChangeKind]) -> None:
    both = sorted(k.value for k in value & instance.auto_approve)
    if both:
        raise ValueError(f"{', '.join(both)}: a kind under the two-person rule is never "
                         "auto-approved")


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


@attrs.frozen
class GatewayConfig:
    mount_roots: tuple[MountRoot, ...] = attrs.field(default=(), converter=_roots)
    # MCP servers the host offers ([[mcp.servers]]), each with the tools it may grant
    # (None: any tool whose name the host would offer).
    mcp_catalog: dict[str, frozenset[str] | None] = attrs.field(factory=dict,
                                                                converter=_catalog)
    egress_max_hosts: int = attrs.field(default=32, validator=_positive)
    # Opt-in: kinds a policy may approve without a human (never NEVER_AUTO_APPROVE).
    auto_approve: frozenset[ChangeKind] = attrs.field(
        default=frozenset(), converter=_kinds, validator=_no_privileged_auto)
    # Even for those kinds, a sandbox's own request still needs a human unless this is set.
    auto_approve_from_sandbox: bool = False
    approvals: dict[str, frozenset[ChangeKind]] = attrs.field(
        factory=lambda: dict(DEFAULT_APPROVALS), converter=_approvals)
    # The two-person rule, per kind, off by default (docs/threat-model.md, "The approval
    # model"). A kind in ``separate_approver`` is never approved by the principal that
    # submitted the change; a kind in ``two_approvers`` needs two distinct approving
    # principals, neither of them the submitter. Enforced in the gateway, so for every
    # way to decide (API, ironctl, chat approvals).
    separate_approver: frozenset[ChangeKind] = attrs.field(
        default=frozenset(), converter=_kinds, validator=_not_auto_approved)
    two_approvers: frozenset[ChangeKind] = attrs.field(
        default=frozenset(), converter=_kinds, validator=_not_auto_approved)
    # TTL of changes raised by sessions and the router (operators choose their own).
    request_ttl_seconds: int | None = 7 * DAY
    max_ttl_seconds: int = attrs.field(default=90 * DAY, validator=_positive)
    max_pending_per_requester: int = attrs.field(default=32, validator=_positive)
    # Access requests (pairing) are raised by strangers, so they never share one pool
    # that a few strangers could fill for everyone (with IRC nick rotation, one person
    # is any number of strangers). Pending ones are capped per sender, per chat and per
    # channel instance, and live a day, not a week
    # (docs/channels/pairing-and-chat-approvals.md).
    access_ttl_seconds: int = attrs.field(default=DAY, validator=_positive)
    access_max_pending_per_sender: int = attrs.field(default=2, validator=_positive)
    access_max_pending_per_chat: int = attrs.field(default=8, validator=_positive)
    access_max_pending_per_channel: int = attrs.field(default=64, validator=_positive)
    known_tools: frozenset[str] | None = None  # None: any well-formed tool name
    # The providers an agent group may use (create_agent, model). None: any well-formed
    # name; the plane sets those it holds credentials for.
    providers: frozenset[str] | None = None
    default_provider: str = "mock"
    default_model: str = "mock"
    reserved_agent_names: frozenset[str] = RESERVED_AGENT_NAMES
    callback_timeout: float = 10.0  # bound on a notifier or respawner call
    # Everything kind-specific (kinds/): the registry the gateway consults.
    kinds: ChangeKinds = CHANGE_KINDS

    def approver_must_differ(self, kind: ChangeKind) -> bool:
        return kind in self.separate_approver or kind in self.two_approvers

    def approvals_needed(self, kind: ChangeKind) -> int:
        return 2 if kind in self.two_approvers else 1

    @classmethod
    def from_table(cls, table: object) -> GatewayConfig:
        """From the config file's ``[gateway]`` table: the two-person rule and the
        access-request quotas. Unknown keys and wrong types are errors."""
        if not isinstance(table, dict):
            raise ValueError("gateway must be a table")
        unknown = sorted(set(table) - FILE_KEYS)
        if unknown:
            raise ValueError(f"gateway: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(FILE_KEYS))}")
        values: dict[str, object] = {}
        for key in ("separate_approver", "two_approvers"):
            if key in table:
                kinds = table[key]
                if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
                    raise ValueError(f"gateway.{key} must be a list of change kinds")
                known = {k.value for k in ChangeKind}
                bad = [k for k in kinds if k not in known]
                if bad:
                    raise ValueError(f"gateway.{key}: unknown change kind {bad[0]!r:.40}; "
                                     f"known: {', '.join(sorted(known))}")
                values[key] = frozenset(ChangeKind(k) for k in kinds)
        for key in sorted(FILE_KEYS - {"separate_approver", "two_approvers"}):
            if key in table:
                if isinstance(table[key], bool) or not isinstance(table[key], int):
                    raise ValueError(f"gateway.{key} must be an integer")
                values[key] = table[key]
        return cls(**values)  # type: ignore[arg-type]


# What the config file's ``[gateway]`` table may set.
FILE_KEYS = frozenset({"separate_approver", "two_approvers", "access_ttl_seconds",
                       "access_max_pending_per_sender", "access_max_pending_per_chat",
                       "access_max_pending_per_channel"})
