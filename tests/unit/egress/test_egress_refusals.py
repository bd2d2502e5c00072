"""Deny-by-default: everything the broker must refuse, and proof that the upstream was
never contacted when it did."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ironclaw.contract.ids import new_session_id
from ironclaw.host.egress import EgressLimits, EgressRoute
from ironclaw.host.registry import AgentGroup, Registry
from tests.support.egress import GROUP, OTHER, UPSTREAM, open_world


async def test_a_group_without_a_grant_is_not_granted_and_every_fetch_is_refused(
        base: Path) -> None:
    async with open_world(base) as world:
        assert not await world.broker.granted(GROUP)
        response = await world.fetch(world.url("/echo"))
        assert response.status_code == 403
        body = response.json()
        assert body["error"] == "host_not_allowed"
        assert UPSTREAM in body["detail"] and "egress" in body["detail"]
        assert world.upstream.requests == []
        (event,) = world.events()
        assert (event.outcome, event.upstream, event.status) == ("host_not_allowed", False, 403)
        # An explicitly empty list (a revoked grant) is no grant either.
        await world.grant()
        assert not await world.broker.granted(GROUP)
        await world.grant("*.example.com")
        assert await world.broker.granted(GROUP)


async def test_a_host_not_on_the_list_is_refused_and_never_dialled(base: Path) -> None:
    async with open_world(base, OTHER) as world:
        response = await world.fetch(world.url("/echo"))
        assert response.status_code == 403
        assert response.json()["error"] == "host_not_allowed"
        assert world.upstream.requests == [] and world.upstream.sni == []


async def test_wildcards_cover_subdomains_only(base: Path) -> None:
    async with open_world(base, "*.example.com") as world:
        assert (await world.fetch(world.url("/echo"))).status_code == 200
        await world.grant("*.upstream.example.com")
        refused = await world.fetch(world.url("/echo"))
        assert refused.status_code == 403  # the apex is not under its own wildcard


async def test_revocation_bites_on_the_next_request(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        assert (await world.fetch(world.url("/echo"))).status_code == 200
        await world.grant(OTHER)  # an approved change replacing the list
        assert (await world.fetch(world.url("/echo"))).status_code == 403
        await world.grant()
        assert (await world.fetch(world.url("/echo", OTHER))).status_code == 403
        assert len(world.upstream.requests) == 1


async def test_plain_http_to_an_external_host_is_refused(base: Path) -> None:
    async with open_world(base, UPSTREAM, allow_loopback_hosts=()) as world:
        response = await world.fetch(f"http://{UPSTREAM}/echo")
        assert response.status_code == 403
        assert response.json()["error"] == "scheme_not_allowed"
        assert world.upstream.requests == []


async def test_plain_http_is_allowed_to_a_configured_local_service(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        # The server speaks TLS only, so the exchange fails; but it was attempted,
        # which it never is for an external host.
        response = await world.fetch(world.url("/echo", scheme="http"))
        assert response.status_code in (502, 504)
        assert world.events()[-1].upstream is True


async def test_only_port_443_to_an_external_host(base: Path) -> None:
    async with open_world(base, UPSTREAM, allow_loopback_hosts=()) as world:
        response = await world.fetch(world.url("/echo"))  # the upstream's own port
        assert response.status_code == 403
        assert response.json()["error"] == "port_not_allowed"
        assert world.upstream.requests == []


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "0.0.0.0",
                                     "100.64.0.1", "224.0.0.1", "::1", "fe80::1",
                                     "::ffff:10.0.0.1", "2002:0a00:0001::1", "64:ff9b::a9fe:a9fe"])
async def test_a_name_resolving_to_a_non_public_address_is_refused(
        base: Path, address: str) -> None:
    async with open_world(base, UPSTREAM, allow_loopback_hosts=(),
                          static_hosts={UPSTREAM: address}) as world:
        response = await world.fetch(f"https://{UPSTREAM}/echo")
        assert response.status_code == 403
        body = response.json()
        assert body["error"] == "address_not_allowed"
        assert address not in body["detail"]  # the host's DNS view is not told
        assert world.upstream.requests == []
        (event,) = world.events()
        assert (event.outcome, event.upstream, event.host) == (
            "address_not_allowed", False, UPSTREAM)


async def test_the_real_resolver_is_checked_too(base: Path) -> None:
    async with open_world(base, allow_loopback_hosts=(), static_hosts={}) as world:
        # Only a test can put "localhost" in a grant (the gateway's verifier refuses
        # it); the broker refuses it anyway, by its address.
        await world.grant("localhost")
        response = await world.fetch("https://localhost/echo")
        assert response.status_code == 403
        assert response.json()["error"] == "address_not_allowed"


class ScriptedDns:
    """A DNS server that answers what the test says, and counts the questions (the
    attacker's resolver in a rebinding attack)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def test_the_connection_goes_to_the_address_that_was_checked(base: Path) -> None:
    dns = ScriptedDns(["127.0.0.1"], ["10.0.0.7"])
    async with open_world(base, UPSTREAM, static_hosts={}, resolver=dns) as world:
        # One question per new connection, and the socket goes to that answer: TLS and
        # Host still name the host, so the certificate is checked against the name.
        assert (await world.fetch(world.url("/echo"))).status_code == 200
        assert dns.asked == [UPSTREAM] and world.upstream.sni == [UPSTREAM]
        # The name now "rebinds" to a private address: a new connection is refused. (A
        # kept-alive one still goes to the address checked when it was opened.)
        await world.broker.stop_session(world.route.session_id)
        await world.broker.serve_session(world.route)
        refused = await world.fetch(world.url("/echo"))
        assert refused.json()["error"] == "address_not_allowed"
        assert dns.asked == [UPSTREAM, UPSTREAM]
        assert len(world.upstream.requests) == 1


async def test_one_forbidden_address_in_the_answer_refuses_the_name(base: Path) -> None:
    dns = ScriptedDns(["127.0.0.1", "192.168.0.9"])
    async with open_world(base, UPSTREAM, static_hosts={}, resolver=dns) as world:
        response = await world.fetch(world.url("/echo"))
        assert response.status_code == 403
        assert world.upstream.requests == []


async def test_a_local_service_must_resolve_to_loopback(base: Path) -> None:
    async with open_world(base, UPSTREAM, static_hosts={UPSTREAM: "93.184.216.34"}) as world:
        response = await world.fetch(world.url("/echo"))
        assert response.status_code == 403
        assert response.json()["error"] == "address_not_allowed"


@pytest.mark.parametrize(("url", "status", "error"), [
    ("https://127.0.0.1/echo", 403, "host_not_allowed"),
    ("https://[::1]/echo", 403, "host_not_allowed"),
    ("https://2130706433/echo", 400, "bad_request"),
    ("https://0x7f.1/echo", 403, "host_not_allowed"),
    (f"https://user:pass@{UPSTREAM}/echo", 400, "bad_request"),
    (f"https://{UPSTREAM}\\@evil.example.net/", 400, "bad_request"),
    (f"ftp://{UPSTREAM}/", 400, "bad_request"),
    ("file:///etc/passwd", 400, "bad_request"),
    ("/relative", 400, "bad_request"),
    ("https:///nohost", 400, "bad_request"),
    (f"https://{UPSTREAM} x/", 400, "bad_request"),
    ("https://" + "a" * 9000 + ".com/", 400, "bad_request"),
])
async def test_urls_that_are_not_plain_named_https_are_refused(
        base: Path, url: str, status: int, error: str) -> None:
    async with open_world(base, UPSTREAM, "*.example.net") as world:
        response = await world.fetch(url)
        assert (response.status_code, response.json()["error"]) == (status, error)
        assert world.upstream.requests == []


async def test_the_same_name_in_another_spelling_is_the_same_host(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        spelled = world.url("/echo").replace(UPSTREAM, "UpStream.Example.COM.")
        answer = (await world.fetch(spelled)).json()
        assert answer["status"] == 200
        assert world.upstream.sni == [UPSTREAM]


async def test_the_rate_cap_answers_429_with_retry_after_per_session(base: Path) -> None:
    limits = EgressLimits(rate=0.01, burst=2)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        statuses = [(await world.fetch(world.url("/echo"))).status_code for _ in range(2)]
        limited = await world.fetch(world.url("/echo"))
        assert statuses == [200, 200]
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert len(world.upstream.requests) == 2
        # Another session has its own bucket.
        sid = new_session_id()
        other = EgressRoute(sid, GROUP, base / "s" / sid[:12] / "egress.sock")
        await world.broker.serve_session(other)
        async with world.client(other.socket_path) as client:
            fresh = await client.post("/v1/fetch", json={"url": world.url("/echo")})
        assert fresh.status_code == 200


async def test_the_bucket_refills_at_the_configured_rate(base: Path) -> None:
    # Cheap requests (404s) spend tokens too, which keeps the timing far from the edge.
    limits = EgressLimits(rate=5.0, burst=1)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        assert (await world.post("/v1/none", {})).status_code == 404
        limited = await world.post("/v1/none", {})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
        await trio.sleep(0.25)  # one token is back after 0.2 s
        assert (await world.post("/v1/none", {})).status_code == 404


async def test_rate_limited_floods_are_counted_not_reported_one_by_one(base: Path) -> None:
    limits = EgressLimits(rate=0.01, burst=1, reject_reports_per_s=0.01)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        statuses = [(await world.fetch(world.url("/echo"))).status_code for _ in range(12)]
        assert statuses == [200] + [429] * 11
        # One success and one refusal reported; the other ten held back as a count...
        assert [e.outcome for e in world.events()] == ["ok", "rate_limited"]
        # ...which is reported when the session stops, so none goes missing.
        await world.broker.stop_session(world.route.session_id)
        (*_, summary) = world.events()
        assert (summary.outcome, summary.suppressed) == ("suppressed", 10)


async def test_sessions_are_bound_to_their_own_group(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        await Registry(world.store).put_agent_group(
            AgentGroup(id="closed", name="Closed", folder="closed"))
        sid = new_session_id()
        closed = EgressRoute(sid, "closed", base / "s" / sid[:12] / "egress.sock")
        await world.broker.serve_session(closed)
        async with world.client(closed.socket_path) as client:
            response = await client.post(
                "/v1/fetch", json={"url": world.url("/echo")},
                headers={"X-Ironclaw-Session": world.route.session_id,
                         "X-Ironclaw-Group": GROUP})
        assert response.status_code == 403
        assert world.upstream.requests == []
