"""Egress end to end, through the real control plane: local channel -> router ->
encrypted queues -> a real sandbox_agent subprocess (``process`` runtime) whose mock
model calls ``http_fetch`` -> the egress broker -> a real HTTPS server on loopback ->
back to the chat. The grant comes from an ``egress`` change a human approves at the
gateway; before it the agent has no tool and its session no socket."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.contract.layout import EGRESS_SOCKET, SessionLayout
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION, DEMO_GROUP
from ironclaw.host.egress import EgressConfig
from ironclaw.host.gateway import Principal
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.sockets.unix import bind_unix_socket
from tests.fakes.https_upstream import NAMES, HttpsUpstream, open_https_upstream
from tests.support.plane import dev_plane_config

UPSTREAM = NAMES[0]
OWNER = Principal("operator", frozenset({"owner"}))
SECRET = "s3cr3t"


@attrs.frozen
class Setup:
    plane: ControlPlaneHandles
    upstream: HttpsUpstream


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="ege-", dir="/tmp"))
    try:
        async with open_https_upstream(base) as upstream, trio.open_nursery() as nursery:
            config = dev_plane_config(
                base / "state", base / "keys", egress=EgressConfig(
                    ca_bundle=upstream.ca_file, static_hosts={UPSTREAM: "127.0.0.1"},
                    allow_loopback_hosts=(f"{UPSTREAM}:{upstream.port}",)))
            plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            # Every tool, so that the egress grant alone decides whether http_fetch exists.
            demo = await plane.registry.get_agent_group(DEMO_GROUP)
            await plane.registry.put_agent_group(attrs.evolve(demo, enabled_tools=()))
            yield Setup(plane, upstream)
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def ask(plane: ControlPlaneHandles, text: str) -> str:
    mark = plane.local.cursor(DEMO_CONVERSATION)
    await plane.local.post(DEMO_CONVERSATION, "operator", text)
    with trio.fail_after(60):
        return (await plane.local.wait_for_reply(DEMO_CONVERSATION, after_index=mark)).text


async def egress_socket(plane: ControlPlaneHandles) -> Path:
    (session,) = await plane.registry.list_sessions()
    return SessionLayout.under(plane.config.state_dir, session.id).socket_dir / EGRESS_SOCKET


async def approve_hosts(plane: ControlPlaneHandles, *hosts: str) -> None:
    """Submit and approve an egress change; if the group has a live session, wait for
    the respawn the approval causes (the new launch serves the socket, or not)."""
    live = bool(plane.sessions.live_ids())
    async with plane.events.subscribe("session.started") as started:
        stored = await plane.gateway.submit("egress", DEMO_GROUP, {"hosts": list(hosts)},
                                            requested_by=OWNER, reason="e2e")
        assert stored.status is ChangeStatus.PENDING  # egress is never auto-approved
        decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE,
                                             OWNER)
        assert decided.status is ChangeStatus.APPLIED
        if live:
            with trio.fail_after(30):
                await started.receive()


async def test_an_approved_host_is_fetched_by_the_agent_and_audited(setup: Setup) -> None:
    plane, upstream = setup.plane, setup.upstream
    url = upstream.url(f"/echo/page-{SECRET}?token=q-{SECRET}")
    directive = "tool:http_fetch " + json.dumps({"url": url, "method": "POST",
                                                  "body": f"body-{SECRET}"})

    # Deny by default: no grant, no tool, no socket, nothing reaches the upstream.
    before = await ask(plane, directive)
    assert "unknown tool 'http_fetch'" in before
    socket = await egress_socket(plane)
    assert not socket.exists()

    await approve_hosts(plane, UPSTREAM)
    assert socket.is_socket()
    reply = await ask(plane, directive)
    assert reply.startswith(f"tool result: HTTP 200 from {url}"), reply
    echoed = reply.partition("\n\n")[2]
    assert f'"path": "/echo/page-{SECRET}"' in echoed
    (request,) = upstream.requests
    assert request.body == f"body-{SECRET}".encode()
    assert upstream.sni == [UPSTREAM]

    # Audited: metadata only, never the path, the query or the body.
    entries = await plane.audit.tail(500)
    (entry,) = [e for e in entries if e.kind == "egress.request"]
    fields = entry.fields
    assert (fields["host"], fields["method"], fields["status"], fields["outcome"]) == (
        UPSTREAM, "POST", 200, "ok")
    assert fields["upstream"] is True and fields["request_bytes"] == len(f"body-{SECRET}")
    exported = b"".join([line async for line in plane.audit.export()])
    assert b"egress.request" in exported and SECRET.encode() not in exported
    report = await plane.audit.verify()
    assert report.ok, report.problems

    # Revoked by an approved change that empties the list: the respawned session has no
    # socket and its agent no tool, and the upstream hears nothing more.
    await approve_hosts(plane)
    assert not socket.exists()
    after = await ask(plane, directive)
    assert "unknown tool 'http_fetch'" in after
    assert len(upstream.requests) == 1

    # A socket left behind by a control plane that died is removed at the next launch.
    (session_id,) = plane.sessions.live_ids()
    await plane.sessions.mailbox.send(StopSession(session_id, "test"))
    await plane.sessions.wait_retired(session_id)
    stale, _ = await bind_unix_socket(socket)
    stale.close()
    assert socket.is_socket()
    await ask(plane, "hello")
    assert not socket.exists()


async def test_an_unapproved_host_is_refused_with_guidance(setup: Setup) -> None:
    plane, upstream = setup.plane, setup.upstream
    await approve_hosts(plane, "api.example.org")
    await ask(plane, "hello")  # starts the session with its grant
    assert (await egress_socket(plane)).is_socket()
    reply = await ask(plane, "tool:http_fetch " + json.dumps({"url": upstream.url("/echo")}))
    assert reply.startswith("tool result: egress refused (403 host_not_allowed)"), reply
    assert "request_api_access" in reply
    assert upstream.requests == []
    entries = [e for e in await plane.audit.tail(500) if e.kind == "egress.request"]
    assert [(e.fields["host"], e.fields["outcome"], e.fields["upstream"]) for e in entries] == [
        (UPSTREAM, "host_not_allowed", False)]
