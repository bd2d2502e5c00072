"""The egress broker over a real unix socket, against a real HTTPS server on loopback,
with the allowlist read from a real host.db grant."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import trio

from ironclaw.host.egress import EgressLimits
from tests.support.egress import NAMES, OTHER, SEARCH, UPSTREAM, open_world


async def test_an_allowlisted_host_is_fetched_over_tls_with_the_name_as_sni(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        response = await world.fetch(world.url("/echo/hello?x=1"),
                                     headers={"X-Custom": "yes", "Accept": "text/plain"})
        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == 200 and answer["truncated"] is False
        echoed = json.loads(answer["body"])
        assert echoed["method"] == "GET" and echoed["path"] == "/echo/hello"
        assert echoed["query"] == "x=1"
        sent = dict(echoed["headers"])
        assert sent["x-custom"] == "yes" and sent["accept"] == "text/plain"
        assert sent["host"] == f"{UPSTREAM}:{world.upstream.port}"
        assert answer["headers"]["content-type"] == "application/json"
        assert answer["url"] == world.url("/echo/hello?x=1")
        # TLS was made to the name (SNI), though the socket went to 127.0.0.1.
        assert world.upstream.sni == [UPSTREAM]


async def test_post_carries_its_body_and_head_returns_no_body(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        posted = (await world.fetch(world.url("/echo"), method="POST", body="n=1&m=2",
                                    headers={"content-type": "text/plain"})).json()
        assert json.loads(posted["body"])["body"] == "n=1&m=2"
        head = (await world.fetch(world.url("/bytes/10"), method="HEAD")).json()
        assert head["status"] == 200 and head["body"] == ""
        assert [r.method for r in world.upstream.requests] == ["POST", "HEAD"]


async def test_socket_is_reachable_by_another_uid_but_guarded_by_its_directory(
        base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        mode = os.lstat(world.route.socket_path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert not os.lstat(world.route.socket_path.parent).st_mode & 0o022
        await world.broker.stop_session(world.route.session_id)
        assert not world.route.socket_path.exists()
        assert world.broker.sessions == frozenset()


async def test_the_upstream_sees_no_hop_by_hop_proxy_or_identity_headers(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        hostile = {"Host": "evil.example.net", "X-Forwarded-For": "10.0.0.1",
                   "Forwarded": "for=10.0.0.1", "Proxy-Authorization": "Basic eA==",
                   "X-Ironclaw-Session": "someone-else", "Connection": "close, X-Drop",
                   "X-Drop": "1", "Via": "1.1 box", "Accept-Encoding": "br",
                   "Authorization": "Bearer agent-own-token"}
        answer = (await world.fetch(world.url("/echo"), headers=hostile)).json()
        sent = dict(json.loads(answer["body"])["headers"])
        assert sent["host"] == f"{UPSTREAM}:{world.upstream.port}"
        for name in ("x-forwarded-for", "forwarded", "proxy-authorization",
                     "x-ironclaw-session", "x-drop", "via"):
            assert name not in sent, name
        assert sent["accept-encoding"] == "identity"
        # The agent's own credential goes to the host it named (the broker adds none).
        assert sent["authorization"] == "Bearer agent-own-token"


async def test_a_large_response_is_cut_at_the_cap_and_says_so(base: Path) -> None:
    limits = EgressLimits(rate=1000.0, burst=1000, max_response_bytes=1000)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        small = (await world.fetch(world.url("/bytes/1000"))).json()
        assert small["truncated"] is False and small["body"] == "a" * 1000
        big = (await world.fetch(world.url("/bytes/500000"))).json()
        assert big["truncated"] is True and big["body"] == "a" * 1000
        # A compressed body is capped after inflation, not before.
        bomb = (await world.fetch(world.url("/gzip/5000000"))).json()
        assert bomb["truncated"] is True and bomb["body"] == "a" * 1000
        ok = (await world.fetch(world.url("/gzip/900"))).json()
        assert ok["truncated"] is False and ok["body"] == "a" * 900
        # The connection that was cut is not reused for the next request.
        again = (await world.fetch(world.url("/bytes/5"))).json()
        assert again["body"] == "aaaaa"
        events = world.events()
        assert events[1].response_bytes < 500000  # the read stopped early
        assert len(gzip.compress(b"a" * 5000000)) < 10000


async def test_search_goes_to_the_configured_backend_and_is_bounded(base: Path) -> None:
    async with open_world(base, SEARCH) as world:
        response = await world.post("/v1/search", {"query": "trio nurseries", "max_results": 3})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == 3
        assert results[0] == {"title": "Result 1 for trio nurseries",
                              "url": "https://r1.example.org/",
                              "snippet": "snippet 1 about trio nurseries"}
        (request,) = world.upstream.requests
        assert request.path == "/search" and "q=trio%20nurseries" in request.query
        (event,) = world.events()
        assert event.operation == "search" and event.host == SEARCH
        assert event.outcome == "ok"


async def test_search_is_refused_when_the_backend_host_is_not_allowlisted(base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        response = await world.post("/v1/search", {"query": "anything"})
        assert response.status_code == 403
        assert response.json()["error"] == "host_not_allowed"
        assert SEARCH in response.json()["detail"]
        assert world.upstream.requests == []


async def test_search_without_a_backend_says_so(base: Path) -> None:
    async with open_world(base, SEARCH, search_url=None) as world:
        response = await world.post("/v1/search", {"query": "anything"})
        assert response.status_code == 501
        assert response.json()["error"] == "no_search_backend"


async def test_redirects_are_followed_only_to_allowlisted_hosts(base: Path) -> None:
    async with open_world(base, UPSTREAM, OTHER) as world:
        to_other = world.url("/echo/landed", OTHER)
        hop = (await world.fetch(world.url(f"/redirect?to={to_other}&code=302"),
                                 headers={"Authorization": "Bearer t"})).json()
        assert hop["status"] == 200 and hop["url"] == to_other
        landed = json.loads(hop["body"])
        assert landed["path"] == "/echo/landed"
        # The credential stayed with the origin it was meant for.
        assert "authorization" not in dict(landed["headers"])
        assert world.events()[-1].redirects == 1
        assert world.events()[-1].final_host == OTHER

        await world.grant(UPSTREAM)
        count = len(world.upstream.requests)
        refused = await world.fetch(world.url(f"/redirect?to={to_other}&code=307"))
        assert refused.status_code == 403
        assert refused.json()["error"] == "redirect_not_allowed"
        assert OTHER in refused.json()["detail"]
        # The redirect itself was fetched; its target never was.
        assert len(world.upstream.requests) == count + 1
        event = world.events()[-1]
        assert (event.host, event.final_host, event.outcome) == (
            UPSTREAM, OTHER, "redirect_not_allowed")


async def test_redirect_chains_are_bounded(base: Path) -> None:
    limits = EgressLimits(rate=1000.0, burst=1000, max_redirects=2)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        url = world.url("/echo")
        for _ in range(3):
            url = world.url(f"/redirect?to={url}")
        response = await world.fetch(url)
        assert response.status_code == 502
        assert response.json()["error"] == "too_many_redirects"


async def test_a_post_redirected_with_303_continues_as_a_get_without_its_body(
        base: Path) -> None:
    async with open_world(base, UPSTREAM) as world:
        answer = (await world.fetch(world.url("/redirect?to=/echo/after&code=303"),
                                    method="POST", body="secret=1",
                                    headers={"content-type": "text/plain"})).json()
        landed = json.loads(answer["body"])
        assert landed["method"] == "GET" and landed["body"] == ""
        assert "content-type" not in dict(landed["headers"])


async def test_an_upstream_that_hangs_ends_in_504_within_the_total_timeout(
        base: Path) -> None:
    limits = EgressLimits(rate=1000.0, burst=1000, total_timeout=0.5)
    async with open_world(base, UPSTREAM, limits=limits) as world:
        started = trio.current_time()
        response = await world.fetch(world.url("/hang"))
        assert response.status_code == 504
        assert response.json()["error"] == "upstream_timeout"
        assert trio.current_time() - started < 5


async def test_certificates_are_verified_against_the_name(base: Path) -> None:
    # Without the test CA the upstream's certificate is untrusted.
    async with open_world(base, UPSTREAM, ca_bundle=None) as world:
        response = await world.fetch(world.url("/echo"))
        assert response.status_code == 502
        assert response.json()["error"] == "upstream_unreachable"
        assert world.upstream.requests == []
        assert world.events()[-1].upstream is True
    # A certificate from a trusted CA, but for other names, does not do for this one.
    stranger = "stranger.example.com"
    (base / "b").mkdir()
    async with open_world(base / "b", stranger, names=(*NAMES, stranger)) as world:
        response = await world.fetch(world.url("/echo", stranger))
        assert response.status_code == 502
        assert response.json()["error"] == "upstream_unreachable"
        assert world.upstream.sni == [stranger] and world.upstream.requests == []
