"""The deterministic verifier chain. Never a model: the same change and registry state
always get the same verdict.

Order: shape, mount allowlist, package names, create_agent, egress hosts, MCP access,
any extra verifiers, and last the human floor. Each verifier passes the kinds it does
not own; each rejects a payload it cannot parse (fail closed, even if used alone). A
verifier that raises counts as a reject.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator, Sequence

from ironclaw.contract.enums import ChangeKind, Verdict
from ironclaw.contract.gateway import (
    MAX_CHANGE_BYTES,
    ChangeRequest,
    Verifier,
    VerifierResult,
    chain_verdict,
)
from ironclaw.contract.jsonvalue import JSONRejected, JSONValue, parse_json
from ironclaw.host.egress.public_suffix import wildcard_problem

from .config import NEVER_AUTO_APPROVE, GatewayConfig, is_canonical_abs_path
from .payloads import (
    NewAgent,
    PayloadError,
    ToolList,
    parse_access,
    parse_create_agent,
    parse_egress,
    parse_mcp_access,
    parse_mounts,
    parse_packages,
    parse_payload,
    parse_wiring,
)
from .state import ChangeContext

log = logging.getLogger(__name__)

VERIFIER = "verifier"  # decided_by of a verifier's reject


def _after(change: ChangeRequest) -> JSONValue:
    return parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)


class _Base:
    name = "base"
    kinds: frozenset[ChangeKind] = frozenset()

    def verify(self, change: ChangeRequest) -> VerifierResult:
        if self.kinds and change.kind not in self.kinds:
            return self.ok()
        try:
            problem = self.check(change, _after(change))
        except (PayloadError, JSONRejected) as exc:
            problem = str(exc)
        return self.reject(problem) if problem else self.ok()

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        raise NotImplementedError

    def ok(self, reason: str = "ok") -> VerifierResult:
        return VerifierResult(self.name, Verdict.PASS, reason)

    def reject(self, reason: str) -> VerifierResult:
        return VerifierResult(self.name, Verdict.REJECT, reason[:500])


class ShapeVerifier(_Base):
    """The payload has its kind's shape, and everything it names exists and belongs to
    the change's agent group."""

    name = "shape"

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        self._context = context
        self._config = config

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        parsed = parse_payload(change.kind, after)
        ctx = self._context
        if change.kind is not ChangeKind.CREATE_AGENT and not ctx.group_exists:
            return f"no agent group {change.agent_group!r:.70}"
        known = self._config.known_tools
        if isinstance(parsed, ToolList | NewAgent) and known is not None:
            unknown = [t for t in parsed.tools if t not in known]
            if unknown:
                return f"unknown tool {unknown[0]!r}"
        if change.kind is ChangeKind.WIRING:
            return self._wiring(change, after)
        if change.kind is ChangeKind.ACCESS:
            return self._access(after)
        if change.kind is ChangeKind.EGRESS:
            for dest in (parse_egress(after).destinations or {}).values():
                if dest and dest.target_agent_group and (
                        dest.target_agent_group not in ctx.group_ids):
                    return f"no agent group {dest.target_agent_group!r:.70} to send to"
        return None

    def _wiring(self, change: ChangeRequest, after: JSONValue) -> str | None:
        ctx = self._context
        patch = parse_wiring(after)
        wiring, group = patch.wiring, patch.messaging_group
        if wiring is None:
            return None if ctx.group_wiring_ids else "the agent group has no wiring to change"
        if ctx.wiring_owner is not None:
            if ctx.wiring_owner != change.agent_group:
                return "that wiring belongs to another agent group"
            return "an existing wiring keeps its messaging group" if group else None
        if patch.delete:
            return "no such wiring"
        if group is None or not ctx.messaging_group_exists:
            return "a new wiring needs an existing messaging group"
        return None

    def _access(self, after: JSONValue) -> str | None:
        ctx = self._context
        grant = parse_access(after)
        missing = [g for g in grant.member_of if g not in ctx.group_ids]
        if missing:
            return f"no agent group {missing[0]!r:.70}"
        if grant.request is None:
            return None
        if ctx.access_request is None:
            return "no such access request"
        status, user, messaging_group = ctx.access_request
        if status != "pending":
            return f"the access request is already {status}"
        if user != grant.user or grant.messaging_group not in (None, messaging_group):
            return "the change does not match its access request"
        return None


class MountAllowlistVerifier(_Base):
    """Sources are canonical absolute paths under a configured root; read-only unless
    the root allows writing; targets under ``/mnt/``."""

    name = "mount-allowlist"
    kinds = frozenset({ChangeKind.MOUNTS})

    def __init__(self, config: GatewayConfig) -> None:
        self._roots = config.mount_roots

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        targets = set()
        for mount in parse_mounts(after):
            if not is_canonical_abs_path(mount.source):
                return f"{mount.source!r:.80} is not a canonical absolute path"
            root = next((r for r in self._roots if mount.source == r.path
                         or mount.source.startswith(r.path + "/")), None)
            if root is None:
                return f"{mount.source!r:.80} is outside every allowed mount root"
            if not mount.readonly and not root.writable:
                return f"{mount.source!r:.80} may only be mounted read-only"
            if not is_canonical_abs_path(mount.target) or not mount.target.startswith("/mnt/"):
                return f"mount target {mount.target!r:.80} is not a path under /mnt/"
            if mount.target in targets:
                return f"two mounts share the target {mount.target!r:.80}"
            targets.add(mount.target)
        return None


PACKAGE_GRAMMARS = {
    # Debian policy: lowercase letters, digits, + - . ; at least two characters.
    "apt": re.compile(r"[a-z0-9][a-z0-9+.-]{1,62}"),
    # PEP 508 names: letters, digits, . _ - ; start and end alphanumeric.
    "pip": re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?"),
    # npm: optional @scope/, lowercase URL-safe characters, no leading . or _.
    "npm": re.compile(r"(?:@[a-z0-9][a-z0-9._-]{0,100}/)?[a-z0-9][a-z0-9._-]{0,100}"),
}


class PackageNameVerifier(_Base):
    """Plain package names only: no shell metacharacters, URLs, paths, versions or
    option-looking names (``--index-url=...``)."""

    name = "package-names"
    kinds = frozenset({ChangeKind.PACKAGES})

    def __init__(self, config: GatewayConfig) -> None:
        self._denied = config.package_denylist

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        for manager, names in parse_packages(after).items():
            for name in names:
                if not PACKAGE_GRAMMARS[manager].fullmatch(name) or ".." in name:
                    return f"{manager} package {name!r:.60} is not a plain package name"
                if f"{manager}:{name.lower()}" in self._denied:
                    return f"{manager} package {name!r:.60} is denied"
        return None


AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
AGENT_FOLDER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")


class CreateAgentVerifier(_Base):
    name = "create-agent"
    kinds = frozenset({ChangeKind.CREATE_AGENT})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        self._context = context
        self._config = config

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        agent = parse_create_agent(after)
        ctx, reserved = self._context, self._config.reserved_agent_names
        if not AGENT_NAME.fullmatch(agent.name) or ".." in agent.name:
            return f"invalid agent name {agent.name!r:.70}"
        if not AGENT_FOLDER.fullmatch(agent.folder):
            return f"invalid folder {agent.folder!r:.70}"
        if agent.folder in reserved or agent.name.casefold() in reserved:
            return "that name is reserved"
        if agent.folder in ctx.group_folders or agent.folder in ctx.group_ids:
            return f"the folder {agent.folder!r} is already in use"
        if agent.name.casefold() in ctx.group_names:
            return f"an agent named {agent.name!r:.70} already exists"
        if agent.provider is not None and (not PROVIDER.fullmatch(agent.provider) or (
                self._config.providers is not None
                and agent.provider not in self._config.providers)):
            return f"unknown provider {agent.provider!r:.70}"
        if agent.model is not None and not MODEL.fullmatch(agent.model):
            return f"invalid model {agent.model!r:.70}"
        return None


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Names that resolve inside the host's network, or to any IP they embed.
LOCAL_SUFFIXES = ("localhost", "local", "localdomain", "internal", "intranet", "lan",
                  "home", "corp", "home.arpa", "in-addr.arpa", "ip6.arpa", "nip.io",
                  "sslip.io", "xip.io", "localtest.me", "lvh.me")


def host_problem(entry: str) -> str | None:
    """Why ``entry`` is not an acceptable egress host (None when it is)."""
    host, _, port = entry.partition(":")
    if port and port != "443":
        return f"{entry!r:.80}: only port 443 is allowed"
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if "*" in host:
        return f"{entry!r:.80}: a wildcard is only allowed as a leading '*.'"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return f"{entry!r:.80}: egress is by hostname, never an IP address"
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        return f"{entry!r:.80} is not a lowercase hostname with at least two labels"
    if not labels[-1][0].isalpha():
        return f"{entry!r:.80}: the top-level label must start with a letter"
    if any(host == s or host.endswith("." + s) for s in LOCAL_SUFFIXES):
        return f"{entry!r:.80} names a local or IP-embedding domain"
    return wildcard_problem(host) if wildcard else None


class EgressVerifier(_Base):
    """Hostnames only (never an IP literal, never a local name), a wildcard only as a
    leading ``*.`` and never over a public suffix (``ironclaw.host.egress.public_suffix``),
    port 443 only, and a bounded count. The egress broker must still
    refuse a name that resolves into private, loopback or link-local space."""

    name = "egress-hosts"
    kinds = frozenset({ChangeKind.EGRESS})

    def __init__(self, config: GatewayConfig) -> None:
        self._max = config.egress_max_hosts

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        hosts = parse_egress(after).hosts or ()
        if len(hosts) > self._max:
            return f"at most {self._max} egress hosts per agent group"
        return next((p for p in map(host_problem, hosts) if p), None)


class McpAccessVerifier(_Base):
    name = "mcp-access"
    kinds = frozenset({ChangeKind.MCP_ACCESS})

    def __init__(self, config: GatewayConfig) -> None:
        self._catalog = config.mcp_catalog

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        for server, tools in parse_mcp_access(after).items():
            if server not in self._catalog:
                return f"no MCP server {server!r:.60} in the catalog"
            undeclared = [t for t in tools if t not in self._catalog[server]]
            if undeclared:
                return f"{server} declares no tool {undeclared[0]!r:.60}"
        return None


def policy_may_approve(config: GatewayConfig, change: ChangeRequest) -> bool:
    """The opt-in policy. Never for NEVER_AUTO_APPROVE, whatever the config says."""
    if change.kind in NEVER_AUTO_APPROVE or change.kind not in config.auto_approve:
        return False
    return config.auto_approve_from_sandbox or not change.requested_by.startswith("session:")


class HumanFloor:
    """Always last: require a human, unless the opt-in policy covers the change."""

    name = "human-floor"

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config

    def verify(self, change: ChangeRequest) -> VerifierResult:
        if policy_may_approve(self._config, change):
            return VerifierResult(self.name, Verdict.PASS, "approved by policy")
        return VerifierResult(self.name, Verdict.REQUIRE_HUMAN, "a human decides")


def build_chain(context: ChangeContext, config: GatewayConfig,
                extra: Sequence[Verifier] = ()) -> list[Verifier]:
    return [ShapeVerifier(context, config), MountAllowlistVerifier(config),
            PackageNameVerifier(config), CreateAgentVerifier(context, config),
            EgressVerifier(config), McpAccessVerifier(config), *extra, HumanFloor(config)]


def _results(chain: Sequence[Verifier], change: ChangeRequest) -> Iterator[VerifierResult]:
    for verifier in chain:
        try:
            yield verifier.verify(change)
        except Exception:
            log.exception("verifier %s failed on change %s", verifier.name, change.id)
            yield VerifierResult(verifier.name, Verdict.REJECT, "the verifier failed")


def run_chain(chain: Sequence[Verifier], change: ChangeRequest
              ) -> tuple[Verdict, VerifierResult | None]:
    """The chain's verdict; a reject short-circuits (later verifiers are not called)."""
    return chain_verdict(_results(chain, change))
