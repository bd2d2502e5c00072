"""The deterministic verifier chain, one verifier at a time and as a chain."""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.contract.enums import ChangeKind, Verdict
from ironclaw.contract.gateway import ChangeRequest, VerifierResult
from ironclaw.contract.ids import new_change_id
from ironclaw.host.gateway import GatewayConfig, MountRoot
from ironclaw.host.gateway.kinds import CHANGE_KINDS, ChangeContext
from ironclaw.host.gateway.kinds.egress import host_problem
from ironclaw.host.gateway.kinds.wiring import WiringFacts
from ironclaw.host.gateway.verifiers import build_chain, run_chain
from tests.support.gateway import CONFIG

CTX = ChangeContext(group_exists=True, group_ids=frozenset({"demo", "other"}),
                    group_names=frozenset({"demo", "other"}),
                    group_folders=frozenset({"demo", "other"}),
                    facts=WiringFacts(group_wiring_ids=("w1",)))


def change(kind: str, after: Any, *, group: str = "demo",
           requested_by: str = "olivia") -> ChangeRequest:
    return ChangeRequest.of(id=new_change_id(), kind=ChangeKind(kind), agent_group=group,
                            requested_by=requested_by, before={}, after=after,
                            created_at=1_800_000_000_000_000)


def judge(kind: str, after: Any, *, config: GatewayConfig = CONFIG,
          ctx: ChangeContext = CTX) -> tuple[Verdict, str | None]:
    verdict, deciding = run_chain(build_chain(ctx, config), change(kind, after))
    return verdict, deciding.verifier if deciding else None


# The grammar of the kinds refused while nothing enforces them (mounts, mcp_access),
# judged as it will be once they are enforced.
ENFORCED = attrs.evolve(CONFIG, kinds=CHANGE_KINDS.with_spec(
    attrs.evolve(CHANGE_KINDS[ChangeKind.MOUNTS], refused="")).with_spec(
    attrs.evolve(CHANGE_KINDS[ChangeKind.MCP_ACCESS], refused="")))


@pytest.mark.parametrize(("kind", "after"), [
    ("packages", {"apt": ["ripgrep"]}),
    ("packages", {"pip": ["foo; rm -rf /"]}),
    ("mounts", [{"source": "/srv/data"}]),
])
def test_a_kind_nothing_enforces_is_refused_before_a_human_sees_it(kind: str,
                                                                   after: Any) -> None:
    verdict, deciding = run_chain(build_chain(CTX, CONFIG), change(kind, after))
    assert deciding is not None
    assert (verdict, deciding.verifier) == (Verdict.REJECT, "refused-kind")
    assert deciding.reason == f"{kind} changes are refused: {CHANGE_KINDS.refused()[kind]}"


@pytest.mark.parametrize(("mounts", "verdict"), [
    ([{"source": "/srv/data"}], Verdict.REQUIRE_HUMAN),
    ([{"source": "/srv"}], Verdict.REQUIRE_HUMAN),
    ([{"source": "/srv/data", "target": "/mnt/d", "readonly": True}], Verdict.REQUIRE_HUMAN),
    ([{"source": "/srv/../etc"}], Verdict.REJECT),
    ([{"source": "/srv/data/.."}], Verdict.REJECT),
    ([{"source": "/etc/passwd"}], Verdict.REJECT),
    ([{"source": "/srvx/data"}], Verdict.REJECT),
    ([{"source": "srv/data"}], Verdict.REJECT),
    ([{"source": "//srv/data"}], Verdict.REJECT),
    ([{"source": "/srv/data/"}], Verdict.REJECT),
    ([{"source": ""}], Verdict.REJECT),
    ([{"source": "/srv/data", "readonly": False}], Verdict.REJECT),
    ([{"source": "/srv/data", "target": "/queue"}], Verdict.REJECT),
    ([{"source": "/srv/data", "target": "/mnt/../etc"}], Verdict.REJECT),
    ([{"source": "/srv/a", "target": "/mnt/x"}, {"source": "/srv/b", "target": "/mnt/x"}],
     Verdict.REJECT),
    ([{"source": "/srv/data", "mode": "rw"}], Verdict.REJECT),
    ({"source": "/srv/data"}, Verdict.REJECT),
    ([{"source": "/srv/data"}] * 17, Verdict.REJECT),
])
def test_mount_allowlist(mounts: Any, verdict: Verdict) -> None:
    assert judge("mounts", mounts, config=ENFORCED)[0] is verdict


def test_a_writable_mount_needs_a_writable_root() -> None:
    config = GatewayConfig(mount_roots=(MountRoot("/srv"), MountRoot("/data", writable=True)),
                           kinds=ENFORCED.kinds)
    assert judge("mounts", [{"source": "/data/x", "readonly": False}], config=config)[0] is (
        Verdict.REQUIRE_HUMAN)
    assert judge("mounts", [{"source": "/srv/x", "readonly": False}], config=config)[0] is (
        Verdict.REJECT)
    with pytest.raises(ValueError):
        MountRoot("/")
    with pytest.raises(ValueError):
        MountRoot("/srv/../etc")


@pytest.mark.parametrize("host", [
    "127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.1", "[::1]", "::1", "fe80::1",
    "8.8.8.8", "127.1", "0x7f.0x1", "2130706433", "localhost", "db.localhost",
    "printer.local", "metadata.google.internal", "1.2.3.4.nip.io", "*.*.example.com",
    "ex*ample.com", "*example.com", "*.com", "com", "example.com:8080", "example.com:80",
    "EXAMPLE.com", "example.com.", "exa mple.com", "-bad.example.com", "http://example.com",
    "a" * 64 + ".example.com", "",
])
def test_bad_egress_hosts_are_rejected(host: str) -> None:
    assert host_problem(host) is not None
    assert judge("egress", {"hosts": [host]}) == (Verdict.REJECT, "egress-hosts")


@pytest.mark.parametrize("host", ["api.example.com", "*.example.org", "example.com:443",
                                  "xn--bcher-kva.example", "a-b.c-d.io"])
def test_good_egress_hosts_go_to_a_human(host: str) -> None:
    assert host_problem(host) is None
    assert judge("egress", {"hosts": [host]}) == (Verdict.REQUIRE_HUMAN, "human-floor")


@pytest.mark.parametrize("host", [
    "*.co.uk", "*.github.io", "*.amazonaws.com", "*.s3.amazonaws.com", "*.herokuapp.com",
    "*.com.au", "*.blogspot.com", "*.x.compute.amazonaws.com", "*.co.uk:443",
])
def test_a_wildcard_over_a_public_suffix_is_rejected(host: str) -> None:
    # Each would grant names that strangers register (pages, buckets, apps).
    problem = host_problem(host)
    assert problem is not None and "public suffix" in problem
    assert judge("egress", {"hosts": [host]}) == (Verdict.REJECT, "egress-hosts")


@pytest.mark.parametrize("host", ["*.example.co.uk", "*.octocat.github.io",
                                  "*.github.com", "co.uk.example.org", "github.io"])
def test_a_wildcard_inside_one_registrant_is_fine(host: str) -> None:
    assert host_problem(host) is None
    assert judge("egress", {"hosts": [host]}) == (Verdict.REQUIRE_HUMAN, "human-floor")


@given(st.ip_addresses())
def test_no_ip_address_is_an_egress_host(address: ipaddress.IPv4Address) -> None:
    assert host_problem(str(address)) is not None
    assert host_problem(f"[{address}]") is not None


@given(st.text(max_size=80))
def test_egress_host_check_is_total(text: str) -> None:
    result = host_problem(text)
    assert result is None or isinstance(result, str)


def test_egress_host_count_is_bounded() -> None:
    config = GatewayConfig(egress_max_hosts=2)
    hosts = ["a.example.com", "b.example.com", "c.example.com"]
    assert judge("egress", {"hosts": hosts[:2]}, config=config)[0] is Verdict.REQUIRE_HUMAN
    assert judge("egress", {"hosts": hosts}, config=config)[0] is Verdict.REJECT


@pytest.mark.parametrize(("after", "verdict"), [
    ({"name": "Research", "folder": "research"}, Verdict.REQUIRE_HUMAN),
    ({"name": "Research", "folder": "research", "provider": "anthropic",
      "model": "claude-sonnet-4", "persona": {"soul": "careful"}, "tools": ["search"]},
     Verdict.REQUIRE_HUMAN),
    ({"name": "Demo", "folder": "demo2"}, Verdict.REJECT),  # name taken
    ({"name": "New", "folder": "demo"}, Verdict.REJECT),  # folder taken
    ({"name": "Root", "folder": "root"}, Verdict.REJECT),  # reserved
    ({"name": "System", "folder": "x1"}, Verdict.REJECT),  # reserved name
    ({"name": "a/b", "folder": "ab"}, Verdict.REJECT),
    ({"name": "a..b", "folder": "ab"}, Verdict.REJECT),
    ({"name": "ok", "folder": "../etc"}, Verdict.REJECT),
    ({"name": "ok", "folder": "Upper"}, Verdict.REJECT),
    ({"name": "ok", "folder": "ok", "provider": "$(x)"}, Verdict.REJECT),
    ({"name": "ok", "folder": "ok", "tools": ["rm -rf"]}, Verdict.REJECT),
    ({"name": "ok"}, Verdict.REJECT),
    ({}, Verdict.REJECT),
    ({"name": "ok", "folder": "ok", "admin": True}, Verdict.REJECT),
])
def test_create_agent(after: Any, verdict: Verdict) -> None:
    assert judge("create_agent", after)[0] is verdict


def test_create_agent_provider_allowlist() -> None:
    config = GatewayConfig(providers=frozenset({"anthropic"}))
    ok = {"name": "R", "folder": "r", "provider": "anthropic"}
    assert judge("create_agent", ok, config=config)[0] is Verdict.REQUIRE_HUMAN
    assert judge("create_agent", {**ok, "provider": "openai"}, config=config)[0] is (
        Verdict.REJECT)


@pytest.mark.parametrize(("after", "verdict"), [
    ({"servers": {"github": ["search_issues"]}}, Verdict.REQUIRE_HUMAN),
    ({"servers": {}}, Verdict.REQUIRE_HUMAN),
    ({"servers": {"gitlab": ["search_issues"]}}, Verdict.REJECT),
    ({"servers": {"github": ["delete_repo"]}}, Verdict.REJECT),
    ({"servers": {"github": []}}, Verdict.REJECT),
    ({"servers": ["github"]}, Verdict.REJECT),
    ({"servers": {"github": "*"}}, Verdict.REQUIRE_HUMAN),
    ({"servers": {"github": "all"}}, Verdict.REJECT),
    ({"servers": {"time": ["get_current_time"]}}, Verdict.REQUIRE_HUMAN),
    ({"servers": {"time": "*"}}, Verdict.REQUIRE_HUMAN),
    # A catalogue entry without a tool list: any name the host would offer.
    ({"servers": {"time": ["send_message"]}}, Verdict.REJECT),
    ({"servers": {"time": ["two__parts"]}}, Verdict.REJECT),
    ({"servers": {"time": ["Upper"]}}, Verdict.REJECT),
])
def test_mcp_access_needs_the_catalog(after: Any, verdict: Verdict) -> None:
    config = attrs.evolve(CONFIG, mcp_catalog={**CONFIG.mcp_catalog, "time": None})
    assert judge("mcp_access", after, config=config)[0] is verdict


def test_mcp_access_is_never_approved_by_policy() -> None:
    assert ChangeKind.MCP_ACCESS in CHANGE_KINDS.never_auto_approved()


@pytest.mark.parametrize(("kind", "after"), [
    ("persona", {}),
    ("persona", {"instructions": 3}),
    ("persona", {"instructions": "x", "model": "gpt"}),
    ("persona", {"soul": "nul\x00byte"}),
    ("persona", {"soul": "x" * (64 * 1024 + 1)}),
    ("enabled_tools", ["search", "search"]),
    ("enabled_tools", ["Search"]),
    ("enabled_tools", {"add": ["x"]}),
    ("wiring", {}),
    ("wiring", {"engage": "always"}),
    ("wiring", {"priority": True}),
    ("wiring", {"wiring": "w1", "delete": True, "pattern": "x"}),
    ("wiring", {"messaging_group": "mg1", "pattern": "x"}),
    ("permissions", {"grant": "root", "user": "u"}),
    ("permissions", {"grant": "admin", "revoke": "admin", "user": "u"}),
    ("permissions", {"grant": "owner", "user": "u", "scope": "group"}),
    ("permissions", {"grant": "admin", "user": "../u"}),
    ("permissions", []),
    ("egress", {}),
    ("egress", {"hosts": "example.com"}),
    ("egress", {"destinations": {"Bad Name": None}}),
    ("egress", {"destinations": {"ops": {"type": "agent", "target_agent_group": "ghost"}}}),
    ("egress", {"destinations": {"ops": {"type": "channel", "channel": "slack"}}}),
    ("access", {"user": "u", "member_of": []}),
    ("access", {"user": "u", "member_of": ["ghost"]}),
    ("access", {"user": "u", "member_of": ["demo"], "request": "acc_1"}),
])
def test_payload_shape_is_checked_per_kind(kind: str, after: Any) -> None:
    assert judge(kind, after) == (Verdict.REJECT, "shape")


def test_a_change_for_a_missing_agent_group_is_rejected() -> None:
    ctx = ChangeContext(group_exists=False)
    assert judge("persona", {"soul": "x"}, ctx=ctx) == (Verdict.REJECT, "shape")


def test_wiring_rules_depend_on_who_owns_the_wiring() -> None:
    mine = ChangeContext(group_exists=True, facts=WiringFacts(group_wiring_ids=("w1",),
                                                              wiring_owner="demo"))
    theirs = ChangeContext(group_exists=True, facts=WiringFacts(wiring_owner="other"))
    new = ChangeContext(group_exists=True, facts=WiringFacts(messaging_group_exists=True))
    none = ChangeContext(group_exists=True)
    assert judge("wiring", {"wiring": "w1", "pattern": "x"}, ctx=mine)[0] is (
        Verdict.REQUIRE_HUMAN)
    assert judge("wiring", {"wiring": "w1", "pattern": "x"}, ctx=theirs)[0] is Verdict.REJECT
    assert judge("wiring", {"wiring": "w1", "delete": True}, ctx=theirs)[0] is Verdict.REJECT
    assert judge("wiring", {"wiring": "w2", "messaging_group": "mg1", "pattern": "x"},
                 ctx=new)[0] is Verdict.REQUIRE_HUMAN
    assert judge("wiring", {"wiring": "w2", "messaging_group": "mg1", "pattern": "x"},
                 ctx=none)[0] is Verdict.REJECT
    assert judge("wiring", {"pattern": "x"}, ctx=none)[0] is Verdict.REJECT
    assert judge("wiring", {"wiring": "w9", "delete": True}, ctx=none)[0] is Verdict.REJECT


def test_known_tools_limit_what_may_be_enabled() -> None:
    config = GatewayConfig(known_tools=frozenset({"search", "fetch"}))
    assert judge("enabled_tools", ["search"], config=config)[0] is Verdict.REQUIRE_HUMAN
    assert judge("enabled_tools", ["shell"], config=config)[0] is Verdict.REJECT


class Spy:
    def __init__(self, name: str, verdict: Verdict) -> None:
        self.name = name
        self.verdict = verdict
        self.calls = 0

    def verify(self, change: ChangeRequest) -> VerifierResult:
        self.calls += 1
        return VerifierResult(self.name, self.verdict, "spy")


class Broken:
    name = "broken"

    def verify(self, change: ChangeRequest) -> VerifierResult:
        raise RuntimeError("boom")


def test_chain_first_reject_short_circuits_and_require_human_wins() -> None:
    ask, no, later = (Spy("ask", Verdict.REQUIRE_HUMAN), Spy("no", Verdict.REJECT),
                      Spy("later", Verdict.REJECT))
    verdict, deciding = run_chain([ask, no, later], change("persona", {"soul": "x"}))
    assert (verdict, deciding and deciding.verifier) == (Verdict.REJECT, "no")
    assert later.calls == 0
    verdict, deciding = run_chain([Spy("a", Verdict.PASS), ask, Spy("b", Verdict.PASS)],
                                  change("persona", {"soul": "x"}))
    assert (verdict, deciding and deciding.verifier) == (Verdict.REQUIRE_HUMAN, "ask")
    assert run_chain([], change("persona", {"soul": "x"})) == (Verdict.PASS, None)


def test_a_verifier_that_raises_rejects() -> None:
    verdict, deciding = run_chain([Broken(), Spy("floor", Verdict.PASS)],
                                  change("persona", {"soul": "x"}))
    assert (verdict, deciding and deciding.verifier) == (Verdict.REJECT, "broken")


def test_the_floor_is_last_and_policy_skips_sandbox_requests() -> None:
    config = GatewayConfig(auto_approve={"persona"})
    chain = build_chain(CTX, config, [Spy("extra", Verdict.PASS)])
    assert [v.name for v in chain][-2:] == ["extra", "human-floor"]
    assert run_chain(chain, change("persona", {"soul": "x"}))[0] is Verdict.PASS
    from_sandbox = change("persona", {"soul": "x"}, requested_by="session:ses_" + "a" * 16)
    assert run_chain(chain, from_sandbox)[0] is Verdict.REQUIRE_HUMAN
    assert run_chain(chain, change("wiring", {"pattern": "x"}))[0] is Verdict.REQUIRE_HUMAN
