"""``ironctl connect`` end to end: a webhook chat that has never written is connected to
the demo agent with one change, approved once; its member is answered, and a sender
not listed meets the chat's policy (here: an access request for a human)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import httpx
import trio

from ironclaw.host.api import ApiSettings, Principals, bootstrap_owner, serve_api
from ironclaw.host.events import AccessRequested
from tests.channels.test_webhook import OUT_SECRET, URL_TOKEN, Sender, webhook_settings
from tests.fakes.ngircd import free_port
from tests.fakes.webhook_receiver import open_webhook_receiver
from tests.support.channels import open_channel_plane
from tests.support.ironctl import ironctl

TOKEN = "icw_e2e_connect_owner_" + "c" * 24


def event(event_id: str, sender: str, text: str) -> dict[str, Any]:
    return {"id": event_id, "chat": "ops", "sender": sender, "text": text}


async def test_a_chat_connected_ahead_of_time_is_answered_and_strangers_meet_its_policy(
        tmp_path: Path) -> None:
    port = free_port()
    with trio.fail_after(60):
        async with open_webhook_receiver(OUT_SECRET.encode(), URL_TOKEN) as receiver, \
                open_channel_plane(tmp_path, [webhook_settings(port, receiver)]) as plane, \
                httpx.AsyncClient(timeout=20) as client, trio.open_nursery() as nursery:
            principals = Principals(plane.store, plane.api_token_key, audit=plane.audit)
            assert await bootstrap_owner(principals, env_token=TOKEN) is None
            (addr,) = await nursery.start(functools.partial(
                serve_api, plane, ApiSettings(host="127.0.0.1", port=0),
                token_key=plane.api_token_key))

            async def run(*argv: str) -> Any:
                return await ironctl(None, "--addr", addr, "--timeout", "30", *argv,
                                     token=TOKEN)

            unknown = await run("connect", "slack", "ops", "--agent", "demo")
            assert unknown.code == 1 and "unknown channel 'slack'" in unknown.err
            usage = await run("connect", "webhook", "ops", "--agent", "demo",
                              "--engage", "pattern")
            assert usage.code == 2 and "--pattern" in usage.err

            submitted = await run("connect", "webhook", "ops", "--agent", "demo",
                                  "--members", "alice", "--policy", "request_approval")
            assert submitted.code == 0, submitted.err
            assert '+ /members: ["alice"]' in submitted.out
            (change_id,) = [line.split()[-1] for line in submitted.out.splitlines()
                            if line.startswith("approve it with:")]
            assert await plane.registry.find_messaging_group("webhook", "ops") is None
            approved = await run("change", "approve", change_id, "--json")
            assert approved.code == 0 and approved.json()["status"] == "applied"
            # One change, one approval: nothing else was submitted.
            history = (await run("change", "history", "--json")).json()["changes"]
            assert [(c["kind"], c["status"]) for c in history] == [
                ("connect_chat", "applied"), ("connect_chat", "rejected")]

            sender = Sender(port, client)
            assert (await sender.post(event("e-1", "alice", "hello"))).status_code == 200
            [reply] = await receiver.wait_for(lambda p: p.body["text"] == "echo: hello")
            assert reply.body["chat"] == "ops"
            chat = await plane.registry.find_messaging_group("webhook", "ops")
            assert chat is not None

            async with plane.events.subscribe("access.requested", since=0) as stream:
                await sender.post(event("e-2", "mallory", "let me in"))
                async for item in stream:
                    found = getattr(item, "event", None)
                    if isinstance(found, AccessRequested):
                        assert found.user_id == "webhook:mallory"
                        assert found.messaging_group_id == chat.id
                        break
            assert [p.body["text"] for p in receiver.received] == ["echo: hello"]
            nursery.cancel_scope.cancel()
