"""Pairing cannot be starved: access requests are capped per sender, per chat and per
channel instance, never in one pool that strangers fill for everyone, and they live a
day. The attack: one person rotating IRC nicks raises request after request in one
chat; everyone elsewhere must still be able to ask."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from ironclaw.contract.enums import ChangeStatus
from ironclaw.host.gateway import TooManyPending
from ironclaw.host.registry import AccessRequestStatus, Wiring
from tests.support.gateway import CONFIG, Harness, open_gateway

QUOTAS = attrs.evolve(CONFIG, access_max_pending_per_sender=2, access_max_pending_per_chat=4,
                      access_max_pending_per_channel=6)


async def chat(h: Harness, channel: str, name: str) -> str:
    group = await h.registry.ensure_messaging_group(channel, name)
    await h.registry.put_wiring(Wiring(id=f"w-{channel}-{name.strip('#')}",
                                       messaging_group_id=group.id, agent_group_id="demo"))
    return group.id


async def ask(h: Harness, chat_id: str, user: str) -> bool:
    """What the router does with a stranger's message: raise a request and submit it;
    a refused one is closed again (so it holds no place)."""
    request, _ = await h.registry.request_access(chat_id, user)
    try:
        stored = await h.gateway.submit_access_request(request)
    except TooManyPending:
        await h.registry.decide_access_request(request.id, grant=False, decided_by="system")
        return False
    assert stored.status is ChangeStatus.PENDING
    return True


async def test_nick_rotation_in_one_chat_starves_nobody_else(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "host.db", config=QUOTAS) as h:
        flooded = await chat(h, "irc", "#flooded")
        quiet = await chat(h, "irc", "#quiet")
        elsewhere = await chat(h, "telegram", "-100")
        # Forty nicks in one chat: the chat's share (4) is all they get.
        accepted = [await ask(h, flooded, f"irc:nick{n}") for n in range(40)]
        assert accepted == [True] * 4 + [False] * 36
        # Other chats, on the same platform and elsewhere, still pair.
        assert await ask(h, quiet, "irc:alice")
        assert await ask(h, elsewhere, "telegram:42")
        # The channel instance's share bounds an attacker spread over many chats.
        spread = [await ask(h, await chat(h, "irc", f"#c{n}"), f"irc:x{n}") for n in range(4)]
        assert spread == [True, False, False, False]  # irc: 4 + 1 + 1 = 6 pending
        assert await ask(h, await chat(h, "telegram", "-200"), "telegram:43")
        # One sender gets two places, however many chats it writes in.
        more = [await ask(h, await chat(h, "telegram", f"-3{n}"), "telegram:7")
                for n in range(3)]
        assert more == [True, True, False]
        pending = await h.registry.list_access_requests(AccessRequestStatus.PENDING)
        assert len(pending) == 4 + 1 + 1 + 1 + 1 + 2
        assert len(await h.gateway.pending()) == len(pending)


async def test_a_pairing_request_lives_a_day_then_frees_its_place(
        tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    config = attrs.evolve(QUOTAS, access_max_pending_per_chat=1)
    async with open_gateway(tmp_path / "host.db", config=config) as h:
        room = await chat(h, "irc", "#room")
        assert await ask(h, room, "irc:squatter")
        (stored,) = await h.gateway.pending()
        assert stored.change.expires_at == stored.change.created_at + 24 * 3600 * 10**6
        assert config.access_ttl_seconds < CONFIG.request_ttl_seconds  # type: ignore[operator]
        assert not await ask(h, room, "irc:latecomer")
        mock_clock.jump(24 * 3600 - 1)
        await trio.testing.wait_all_tasks_blocked()
        assert not await ask(h, room, "irc:latecomer")  # still the squatter's, a day long
        mock_clock.jump(2)
        await h.notifier.wait_for(stored.change.id, ChangeStatus.EXPIRED)
        assert await ask(h, room, "irc:latecomer")


def test_the_access_quotas_are_positive() -> None:
    with pytest.raises(ValueError):
        attrs.evolve(CONFIG, access_max_pending_per_chat=0)
