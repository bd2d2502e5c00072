"""``egress``: ``{"hosts"?: [...], "destinations"?: {name: spec | null}}``. ``hosts``
replaces the agent group's egress allowlist; each named destination is set, or removed
with ``null``."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.egress.public_suffix import wildcard_problem
from ironclaw.host.registry import RegistryDestination
from ironclaw.host.registry import queries as q

from .. import grants as g
from ..payloads import (
    ENTITY_ID,
    SLUG,
    PayloadError,
    expect_ident,
    expect_object,
    expect_strings,
    expect_text,
)
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, KindVerifier

if TYPE_CHECKING:
    from ..config import GatewayConfig

MAX_HOSTS = 256  # structural cap; the egress verifier applies the configured bound
MAX_DESTINATIONS = 64


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
    obj = expect_object(value, what, _DEST_KEYS, ("type",))
    fields = {k: expect_text(v, f"{what}.{k}", 256) for k, v in obj.items()}
    dest = GrantedDestination(**fields)
    if dest.type == "channel":
        if not dest.channel or not dest.platform_id or dest.target_agent_group:
            raise PayloadError(f"{what}: a channel destination names channel and platform_id")
    elif dest.type == "agent":
        if dest.target_agent_group is None or dest.channel or dest.platform_id:
            raise PayloadError(f"{what}: an agent destination names target_agent_group only")
        expect_ident(dest.target_agent_group, f"{what}.target_agent_group", ENTITY_ID)
    else:
        raise PayloadError(f"{what}: type is channel or agent")
    return dest


@attrs.frozen
class EgressPatch:
    hosts: tuple[str, ...] | None
    destinations: dict[str, GrantedDestination | None] | None  # None value: remove


def parse_egress(value: JSONValue) -> EgressPatch:
    obj = expect_object(value, "egress", ("hosts", "destinations"))
    if not obj:
        raise PayloadError("egress names neither hosts nor destinations")
    hosts = (expect_strings(obj["hosts"], "egress.hosts", MAX_HOSTS) if "hosts" in obj
             else None)
    destinations = None
    if "destinations" in obj:
        raw = obj["destinations"]
        if not isinstance(raw, dict) or len(raw) > MAX_DESTINATIONS:
            raise PayloadError(f"egress.destinations is an object of at most "
                               f"{MAX_DESTINATIONS} names")
        destinations = {
            expect_ident(name, "destination name", SLUG):
                None if spec is None else _destination(spec, f"destination {name}")
            for name, spec in raw.items()}
    return EgressPatch(hosts, destinations)


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    patch = parse_egress(after)
    before: dict[str, JSONValue] = {}
    if patch.hosts is not None:
        before["hosts"] = g.get_grant(conn, group, g.EGRESS_HOSTS) or []
    if patch.destinations is not None:
        current = {d.name: {k: v for k, v in {
            "type": d.type, "display_name": d.display_name, "channel": d.channel,
            "instance": d.instance, "platform_id": d.platform_id,
            "target_agent_group": d.target_agent_group_id}.items() if v is not None}
            for d in q.destinations_for(conn, group)}
        before["destinations"] = {name: current.get(name) for name in patch.destinations}
    return before


def check_shape(change: ChangeRequest, parsed: EgressPatch, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    """An agent destination names an agent group that exists."""
    del change, config
    for dest in (parsed.destinations or {}).values():
        if dest and dest.target_agent_group and (
                dest.target_agent_group not in context.group_ids):
            return f"no agent group {dest.target_agent_group!r:.70} to send to"
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


class EgressVerifier(KindVerifier):
    """Hostnames only (never an IP literal, never a local name), a wildcard only as a
    leading ``*.`` and never over a public suffix (``ironclaw.host.egress.public_suffix``),
    port 443 only, and a bounded count. The egress broker must still
    refuse a name that resolves into private, loopback or link-local space."""

    name = "egress-hosts"
    kinds = frozenset({ChangeKind.EGRESS})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        del context
        self._max = config.egress_max_hosts

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        hosts = parse_egress(after).hosts or ()
        if len(hosts) > self._max:
            return f"at most {self._max} egress hosts per agent group"
        return next((p for p in map(host_problem, hosts) if p), None)


def apply(job: ApplyJob) -> int:
    patch = parse_egress(job.after)
    effects = 0
    if patch.hosts is not None:
        g.set_grant(job.conn, job.group, g.EGRESS_HOSTS, list(patch.hosts), job.change.id,
                    job.now)
        effects += 1
    for name, dest in (patch.destinations or {}).items():
        if dest is None:
            q.remove_destination(job.conn, job.group, name)
        else:
            q.put_destination(job.conn, RegistryDestination(
                agent_group_id=job.group, name=name, type=dest.type,
                display_name=dest.display_name, channel=dest.channel,
                instance=dest.instance, platform_id=dest.platform_id,
                target_agent_group_id=dest.target_agent_group))
        effects += 1
    return effects


SPEC = ChangeKindSpec(
    kind=ChangeKind.EGRESS, parse=parse_egress, read_before=read_before, apply=apply,
    check_shape=check_shape, verifiers=(EgressVerifier,), respawns=True)
