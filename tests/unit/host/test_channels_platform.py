"""The shared pieces every platform adapter stands on: settings, durable state, text
splitting, HTTP failure mapping and part-wise idempotent delivery."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from ironclaw.host.channels.adapters import check_settings, create_adapter
from ironclaw.host.channels.base import InboundEvent, OutboundDelivery
from ironclaw.host.channels.ledger import IdempotentDelivery, MemoryDeliveryLedger
from ironclaw.host.channels.platform import (
    Measure,
    deliver_in_parts,
    delivery_failure,
    split_text,
)
from ironclaw.host.channels.settings import (
    ChannelSettings,
    InvalidChannelSettings,
    parse_channel_tables,
)
from ironclaw.host.channels.state import ChannelState
from ironclaw.host.config.file import ConfigFileError, load_config_file
from ironclaw.host.store import open_host_store


def test_secret_comes_from_the_environment_and_never_prints() -> None:
    settings = ChannelSettings("telegram", "", {"token": "file-token"},
                               environ={"IRONCLAW_TELEGRAM_TOKEN": "env-token"})
    secret = settings.secret("token")
    assert secret.reveal() == "env-token"
    assert "env-token" not in repr(secret) and "env-token" not in repr(settings)
    named = ChannelSettings("slack", "work-team", {}, environ={
        "IRONCLAW_SLACK_WORK_TEAM_APP_TOKEN": "x"})
    assert named.secret("app_token").reveal() == "x"
    with pytest.raises(InvalidChannelSettings, match="IRONCLAW_SLACK_BOT_TOKEN"):
        ChannelSettings("slack", "", {}, environ={}).secret("bot_token")


def test_settings_types_are_checked() -> None:
    settings = ChannelSettings("irc", "", {"port": "x", "tls": "maybe", "chans": ["#a", 1]},
                               environ={"IRONCLAW_IRC_NICKS": "a, b,,c"})
    with pytest.raises(InvalidChannelSettings, match="port must be a number"):
        settings.number("port", 6667)
    with pytest.raises(InvalidChannelSettings, match="tls must be true or false"):
        settings.flag("tls")
    with pytest.raises(InvalidChannelSettings, match="chans must be a list"):
        settings.strings("chans")
    assert settings.strings("nicks") == ("a", "b", "c")
    with pytest.raises(InvalidChannelSettings, match="not a valid name"):
        ChannelSettings("Tele gram")


def test_channel_tables_reject_duplicates_and_bad_keys() -> None:
    assert parse_channel_tables(None) == ()
    with pytest.raises(InvalidChannelSettings, match="configured twice"):
        parse_channel_tables([{"type": "irc"}, {"type": "irc", "instance": ""}])
    with pytest.raises(InvalidChannelSettings, match="bad key"):
        parse_channel_tables([{"type": "irc", "Bad Key": 1}])
    with pytest.raises(InvalidChannelSettings, match="array of tables"):
        parse_channel_tables({"type": "irc"})


def test_config_file_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "ironclaw.toml"
    path.write_text('runtime = "runc"\n[[channels]]\ntype = "webhook"\nport = 9\n')
    loaded = load_config_file(path)
    assert loaded["runtime"] == "runc" and loaded["channels"][0].type == "webhook"
    path.write_text("runtim = 'runc'\n")
    with pytest.raises(ConfigFileError, match="unknown key"):
        load_config_file(path)
    path.write_text("[[channels]\n")
    with pytest.raises(ConfigFileError, match=str(path)):
        load_config_file(path)
    with pytest.raises(ConfigFileError, match="No such file"):
        load_config_file(tmp_path / "absent.toml")


def test_unknown_adapter_type_is_a_clear_error() -> None:
    assert "unknown channel type 'fax'" in check_settings(ChannelSettings("fax"))[0]
    with pytest.raises(InvalidChannelSettings, match="unknown channel type"):
        create_adapter(ChannelSettings("fax"), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("measure", list(Measure))
@given(text=st.text(max_size=600), limit=st.integers(min_value=4, max_value=80))
def test_split_text_respects_the_limit_and_keeps_the_words(
        measure: Measure, text: str, limit: int) -> None:
    pieces = split_text(text, limit, measure)
    size = {Measure.CHARS: len, Measure.UTF16: lambda t: len(t.encode("utf-16-le")) // 2,
            Measure.BYTES: lambda t: len(t.encode())}[measure]
    assert all(size(piece) <= limit for piece in pieces)
    # Only whitespace at the cuts may go; every other character survives, in order.
    assert "".join("".join(pieces).split()) == "".join(text.split())


def test_split_text_prefers_paragraphs_then_lines_then_words() -> None:
    text = "first paragraph here\n\nsecond one is here"
    assert split_text(text, 25) == ["first paragraph here", "second one is here"]
    assert split_text("aaaa bbbb cccc", 10) == ["aaaa bbbb", "cccc"]
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert split_text("", 10) == [""]
    # An emoji is two UTF-16 units and four UTF-8 bytes; it is never cut in half.
    assert split_text("😀" * 5, 4, Measure.UTF16) == ["😀😀", "😀😀", "😀"]
    assert split_text("😀" * 3, 5, Measure.BYTES) == ["😀", "😀", "😀"]


def _response(status: int, *, headers: dict[str, str] | None = None,
              json: object = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=json)


def test_delivery_failure_maps_platform_answers() -> None:
    assert delivery_failure(_response(200), "send") is None
    limited = delivery_failure(_response(429, headers={"Retry-After": "7"}), "send")
    assert limited is not None and limited.retryable and limited.retry_after == 7.0
    telegram = delivery_failure(_response(429, json={
        "ok": False, "parameters": {"retry_after": 3}}), "sendMessage")
    assert telegram is not None and telegram.retry_after == 3.0
    discord = delivery_failure(_response(429, json={"retry_after": 0.25}), "send")
    assert discord is not None and discord.retry_after == 0.25
    server = delivery_failure(_response(502), "send")
    assert server is not None and server.retryable
    refused = delivery_failure(_response(401), "send")
    assert refused is not None and not refused.retryable and "credentials" in str(refused)
    bad = delivery_failure(_response(400), "send")
    assert bad is not None and not bad.retryable


async def test_parts_are_idempotent_one_by_one() -> None:
    ledger = MemoryDeliveryLedger()
    idempotent = IdempotentDelivery(ledger)
    sent: list[str] = []
    fail_on = {"b"}

    async def send(part: OutboundDelivery) -> str:
        if part.text in fail_on:
            raise RuntimeError("platform down")
        sent.append(part.text)
        return f"m{len(sent)}"

    delivery = OutboundDelivery("out1", "x", "", "chat", None, "a b c")
    with pytest.raises(RuntimeError):
        await deliver_in_parts(idempotent, delivery, ["a", "b", "c"], send)
    fail_on.clear()
    receipt = await deliver_in_parts(idempotent, delivery, ["a", "b", "c"], send)
    assert sent == ["a", "b", "c"]  # "a" was not sent twice
    assert receipt.outbound_id == "out1" and receipt.platform_message_id == "m1"
    assert not receipt.duplicate
    again = await deliver_in_parts(idempotent, delivery, ["a", "b", "c"], send)
    assert again.duplicate and sent == ["a", "b", "c"]


async def test_channel_state_survives_a_reopen_and_drops_duplicates(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    event = InboundEvent("telegram", "", "chat1", "alice", "hi")
    routed: list[InboundEvent] = []

    async def router(receive: trio.MemoryReceiveChannel[InboundEvent]) -> None:
        async for item in receive:
            routed.append(item)
            assert item.accepted is not None
            item.accepted.ok(None)

    async with open_host_store(tmp_path / "host.db", key) as store, trio.open_nursery() as n:
        send, receive = trio.open_memory_channel[InboundEvent](0)
        n.start_soon(router, receive)
        state = ChannelState(store, "telegram", "")
        assert await state.cursor("offset") is None
        assert await state.hand_over(send, event, event_id="u1", cursor=("offset", "2"))
        assert not await state.hand_over(send, event, event_id="u1", cursor=("offset", "3"))
        assert len(routed) == 1
        assert await ChannelState(store, "telegram", "other").cursor("offset") is None
        n.cancel_scope.cancel()
    async with open_host_store(tmp_path / "host.db", key) as store:
        state = ChannelState(store, "telegram", "")
        assert await state.cursor("offset") == "3"
        assert await state.seen("u1") and not await state.seen("u2")
        assert await state.prune(retention_us=-1) == 1
        with pytest.raises(ValueError):
            await state.save_cursor("", "x")


def test_http_client_logs_never_carry_request_urls(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request URL at INFO; platform URLs can hold tokens. Even with the
    root logger at DEBUG (a daemon run with --log-level DEBUG), those records stay out."""
    import logging

    import ironclaw.host.channels.platform  # noqa: F401  (the import is the point)

    caplog.set_level(logging.DEBUG)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)


async def test_seen_event_ids_are_forgotten_after_retention(tmp_path: Path) -> None:
    from ironclaw.host.channels.state import prune_seen_events

    async with open_host_store(tmp_path / "host.db", secrets.token_bytes(32)) as store:
        for channel in ("telegram", "slack"):
            await ChannelState(store, channel, "").settle(f"{channel}-1")
        assert await prune_seen_events(store, 0) == 0  # nothing is that old
        import time

        assert await prune_seen_events(store, int(time.time() * 1e6) + 1) == 2
        assert not await ChannelState(store, "slack", "").seen("slack-1")
