"""Matrix end to end against a REAL homeserver: the control plane, the Matrix adapter,
and Synapse on loopback (``tests/fakes/synapse.py``), started once for the module.

What the fake homeserver (``test_matrix.py``) still covers, because a real server will
not produce it on demand: a connection cut in the middle of a long poll, a 502 on one
sync, rate limits (these tests open Synapse's limits wide), a lost send answer, and an
event served twice.
"""

from __future__ import annotations

import json
import logging
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ironclaw.contract.enums import EngageMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms import matrix
from ironclaw.host.channels.platforms.matrix.api import MatrixApi, compact
from ironclaw.host.channels.settings import ChannelSettings, Secret
from tests.fakes.synapse import Account, Synapse, start_synapse, synapse_python
from tests.support.channels import (
    ChatWiring,
    assert_secret_absent,
    open_channel_plane,
    wire,
)
from tests.support.events import next_event, published, routed_decisions
from tests.support.files import PNG, enable_file_tools, stored_path, workspace_file
from tests.support.matrix_person import Person

SYNAPSE_PYTHON = synapse_python()
pytestmark = pytest.mark.skipif(
    SYNAPSE_PYTHON is None,
    reason="Synapse is not installed (./dev.sh makes .venv-synapse with matrix-synapse)")


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    assert SYNAPSE_PYTHON is not None
    server = start_synapse(tmp_path_factory.mktemp("synapse"), SYNAPSE_PYTHON)
    try:
        yield server
    finally:
        server.stop()


class Cast:
    """A fresh bot account and two people, so tests sharing the server share nothing."""

    def __init__(self, server: Synapse, http: httpx.AsyncClient) -> None:
        tag = secrets.token_hex(4)
        self.server = server
        self.bot: Account = server.register(f"ironclaw-{tag}", display_name="IronClaw")
        self.bot_person = Person(self.bot, http)
        self.alice = Person(server.register(f"alice-{tag}"), http)
        self.bob = Person(server.register(f"bob-{tag}"), http)

    def settings(self, **options: Any) -> ChannelSettings:
        return ChannelSettings(
            "matrix", "", {"homeserver": self.server.base_url, "user_id": self.bot.user_id,
                           "poll_timeout_s": 5, **options},
            environ={"IRONCLAW_MATRIX_ACCESS_TOKEN": self.bot.token})

    async def room(self, *others: Person, direct: bool = False) -> str:
        """A room Alice made, with the bot and ``others`` joined."""
        room_id = await self.alice.create_room(
            self.bot.user_id, *(o.user_id for o in others), direct=direct)
        for member in (self.bot_person, *others):
            await member.join(room_id)
        return room_id

    async def replies(self, room_id: str, count: int) -> list[str]:
        return await self.alice.wait_bodies(room_id, self.bot.user_id, count)


@pytest.fixture
async def cast(synapse: Synapse) -> AsyncIterator[Cast]:
    async with httpx.AsyncClient(base_url=synapse.base_url, timeout=30) as http:
        yield Cast(synapse, http)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def received_count(plane: ControlPlaneHandles) -> int:
    return sum(1 for e in await published(plane)
               if getattr(e, "type", None) == "message.received")


async def test_dm_room_mentions_and_thread(cast: Cast, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    dm = await cast.room(direct=True)
    group = await cast.room(cast.bob)
    threads = await cast.room(cast.bob)
    await cast.alice.say(dm, "from before the bot started")  # history: not answered
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [cast.settings()], [
                ChatWiring("matrix", dm, engage_mode=EngageMode.MENTION),
                ChatWiring("matrix", group, engage_mode=EngageMode.MENTION)]) as plane:
            # The default (shared) mode: one session for the room, replies still threaded.
            await wire(plane, ChatWiring("matrix", threads))
            # A DM is addressed to the bot: answered in mention mode without a mention.
            await cast.alice.say(dm, "hello")
            assert await cast.replies(dm, 1) == ["echo: hello"]
            async with plane.events.subscribe("message.routed") as routed:
                await cast.bob.say(group, "just chatting", mentions=[])
                await cast.bob.say(group, "IronClaw is a fine name",
                                   mentions=[cast.alice.user_id])
                await cast.alice.say(group, "IronClaw: pill", mentions=[cast.bot.user_id])
                await cast.alice.say(group, "hey ironclaw, legacy")  # no m.mentions
                assert await routed_decisions(routed, 4) == [
                    "dropped", "dropped", "engaged", "engaged"]
            assert await cast.replies(group, 2) == ["echo: IronClaw: pill",
                                                    "echo: hey ironclaw, legacy"]
            root = await cast.alice.say(threads, "a thread root")
            asked = await cast.bob.say(threads, "in the thread", thread=root)
            await cast.replies(threads, 2)
            bot_events = await cast.alice.events_from(threads, cast.bot.user_id)
            threaded = [e for e in bot_events if "m.relates_to" in e["content"]]
            assert [e["content"]["body"] for e in threaded] == ["echo: in the thread"]
            relation = threaded[0]["content"]["m.relates_to"]
            assert (relation["rel_type"], relation["event_id"]) == ("m.thread", root)
            assert relation["m.in_reply_to"] == {"event_id": asked}
            assert_secret_absent(cast.bot.token, caplog, await published(plane))


async def test_restart_loses_nothing_repeats_nothing_and_fills_the_gap(
        cast: Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Timelines of two events, so six messages missed while down are a real gap
    # that Synapse reports as `limited` and the adapter must page back through.
    monkeypatch.setattr(matrix, "SYNC_FILTER", compact({
        "presence": {"types": []}, "account_data": {"types": ["m.direct"]},
        "room": {"timeline": {"types": ["m.room.message"], "limit": 2},
                 "state": {"types": []}, "ephemeral": {"types": []},
                 "account_data": {"types": []}}}))
    gaps: list[str] = []
    fill_gap = matrix.MatrixAdapter._gap

    async def counted_gap(adapter: matrix.MatrixAdapter, room_id: str, prev_batch: str,
                          since: str) -> list[Any]:
        gaps.append(room_id)
        return await fill_gap(adapter, room_id, prev_batch, since)

    monkeypatch.setattr(matrix.MatrixAdapter, "_gap", counted_gap)
    dm = await cast.room(direct=True)
    wiring = ChatWiring("matrix", dm)
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [cast.settings()], [wiring]):
            await cast.alice.say(dm, "before the restart")
            assert await cast.replies(dm, 1) == ["echo: before the restart"]
        for n in range(6):
            await cast.alice.say(dm, f"missed {n}")
        async with open_channel_plane(tmp_path, [cast.settings()], [wiring]) as plane:
            await cast.replies(dm, 7)
            await cast.alice.say(dm, "after")  # a sentinel: anything repeated is before it
            bodies = await cast.replies(dm, 8)
            assert await received_count(plane) == 7
            assert gaps == [dm]  # Synapse cut the timeline short; the adapter paged back
            assert_secret_absent(cast.bot.token, caplog, await published(plane))
    assert bodies == ["echo: before the restart", *(f"echo: missed {n}" for n in range(6)),
                      "echo: after"]


@pytest.mark.long
async def test_homeserver_restart_reconnects_and_loses_nothing(
        cast: Cast, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = await cast.room(direct=True)
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [cast.settings()],
                                      [ChatWiring("matrix", dm)]) as plane:
            await cast.alice.say(dm, "one")
            await cast.replies(dm, 1)
            async with plane.events.subscribe("channel.*") as channel_events:
                await trio.to_thread.run_sync(cast.server.stop)
                while (await next_event(channel_events)).type != "channel.down":
                    pass
                await trio.to_thread.run_sync(cast.server.start)
                while (await next_event(channel_events)).type != "channel.up":
                    pass
                await cast.alice.say(dm, "two")
                assert await cast.replies(dm, 2) == ["echo: one", "echo: two"]
            assert await received_count(plane) == 2
            assert_secret_absent(cast.bot.token, caplog, await published(plane))


async def test_a_repeated_transaction_id_is_one_event(cast: Cast) -> None:
    dm = await cast.room(direct=True)
    async with httpx.AsyncClient() as http:
        api = MatrixApi(http, cast.server.base_url, Secret(cast.bot.token))
        txn = matrix.txn_id("out-repeat#0")
        content = {"msgtype": "m.text", "body": "once", "m.mentions": {}}
        first = await api.send(dm, txn, content)
        again = await api.send(dm, txn, content)
    assert first == again
    assert await cast.replies(dm, 1) == ["once"]
    assert len(await cast.alice.events_from(dm, cast.bot.user_id)) == 1


async def test_a_file_in_and_an_image_back(cast: Cast, tmp_path: Path) -> None:
    """Files both ways: an ``m.file`` in is fetched through the homeserver's authenticated
    media endpoint; ``send_file`` uploads to the media repository and posts an
    ``m.image`` people can download."""
    dm = await cast.room(direct=True)
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [cast.settings()],
                                      [ChatWiring("matrix", dm)]) as plane:
            await enable_file_tools(plane)
            await cast.alice.say(dm, "hello")
            await cast.replies(dm, 1)
            await cast.alice.share_file(dm, "notes.txt", "application/pdf", b"plain notes\n")
            bodies = await cast.replies(dm, 2)
            path = stored_path(bodies[1], "text/plain", 12)
            assert (await workspace_file(plane, path)).read_bytes() == b"plain notes\n"

            (await workspace_file(plane, path)).parent.joinpath("pic").write_bytes(PNG)
            await cast.alice.say(dm, "tool:send_file " + json.dumps(
                {"path": str(Path(path).parent / "pic"), "caption": "a picture"}))
            await cast.replies(dm, 4)
            events = await cast.alice.events_from(dm, cast.bot.user_id)
            images = [e["content"] for e in events if e["content"]["msgtype"] == "m.image"]
            assert len(images) == 1
            assert (images[0]["body"], images[0]["filename"], images[0]["info"]) == (
                "a picture", "pic.png", {"mimetype": "image/png", "size": len(PNG)})
            assert await cast.alice.download(images[0]["url"]) == PNG


# -- figures (long) -----------------------------------------------------------------------

@pytest.mark.long
async def test_round_trip_and_recovery_figures(cast: Cast, tmp_path: Path) -> None:
    """Reply round trip over 100 messages, p50 and p99, and the time from a homeserver
    restart to the first answered message. Printed; run with ``-s -m long``."""
    dm = await cast.room(direct=True)
    with trio.fail_after(600):
        async with open_channel_plane(tmp_path, [cast.settings()],
                                      [ChatWiring("matrix", dm)]):
            await cast.alice.say(dm, "warm up")
            await cast.replies(dm, 1)
            rounds: list[float] = []
            for n in range(100):
                started = time.perf_counter()
                await cast.alice.say(dm, f"m{n}")
                await cast.alice.wait_bodies(dm, cast.bot.user_id, n + 2, poll_s=0.005)
                rounds.append(time.perf_counter() - started)
            await trio.to_thread.run_sync(cast.server.stop)
            await trio.to_thread.run_sync(cast.server.start)
            started = time.perf_counter()
            await cast.alice.say(dm, "after the restart")
            await cast.alice.wait_bodies(dm, cast.bot.user_id, 102, poll_s=0.005)
            recovery = time.perf_counter() - started
    quantiles = statistics.quantiles(rounds, n=100)
    print(f"\nmatrix/synapse round trip: p50 {quantiles[49] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms; recovery after restart {recovery:.2f} s")
