"""Email end to end: the real control plane, the email adapter, REAL mail servers
(Debian's Dovecot for IMAP and OpenSMTPD for SMTP, ``tests/fakes/mailserver.py``,
started once for the module), and people who send with SMTP and read with IMAP."""

from __future__ import annotations

import email.policy
import imaplib
import logging
import smtplib
import time
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import trio

from ironclaw.contract.enums import SessionMode
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.channels.platforms import email as email_channel
from ironclaw.host.channels.platforms.email.message import (
    authentication_ok,
    html_to_text,
    read_mail,
    reply_message_id,
    trim_quoted,
)
from ironclaw.host.channels.settings import ChannelSettings
from tests.fakes.mailserver import DOMAIN, MailServers, available, start_mail_servers
from tests.support.channels import (
    ChatWiring,
    assert_secret_absent,
    open_channel_plane,
    wire,
)
from tests.support.events import next_event, published

UNAVAILABLE = available()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")

PASSWORDS = {"bot": "bot-pw-7f3a", "alice": "alice-pw", "mallory": "mallory-pw"}
BOT, ALICE, MALLORY = (f"{u}@{DOMAIN}" for u in ("bot", "alice", "mallory"))


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServers]:
    servers = start_mail_servers(tmp_path_factory.mktemp("mail"), PASSWORDS)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def settings(mail: MailServers, **options: Any) -> ChannelSettings:
    return ChannelSettings("email", "", {
        "address": BOT, "username": "bot", "imap_server": "127.0.0.1",
        "imap_port": mail.imap_port, "imap_tls": "none", "smtp_port": mail.smtp_port,
        "smtp_tls": "none", "smtp_login": False, "allowed_senders": [ALICE],
        "idle_s": 20, **options}, environ={"IRONCLAW_EMAIL_PASSWORD": PASSWORDS["bot"]})


def compose(sender: str, subject: str, text: str, message_id: str, *,
            html: str | None = None, headers: Mapping[str, str] | None = None
            ) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, BOT, subject
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    if html is None:
        message.set_content(text)
    else:
        message.set_content(html, subtype="html")
    return message


async def send(mail: MailServers, message: EmailMessage) -> None:
    def submit() -> None:
        with smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
    await trio.to_thread.run_sync(submit)


def _inbox(mail: MailServers, user: str) -> list[EmailMessage]:
    conn = imaplib.IMAP4("127.0.0.1", mail.imap_port, timeout=10)
    try:
        conn.login(user, PASSWORDS[user])
        conn.select("INBOX", readonly=True)
        _, data = conn.uid("SEARCH", "ALL")
        found = []
        for uid in (data[0] or b"").split():
            _, parts = conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            raw = next(p[1] for p in parts if isinstance(p, tuple))
            message = BytesParser(policy=email.policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found
    finally:
        conn.logout()


async def replies_to(mail: MailServers, user: str, count: int) -> list[EmailMessage]:
    """Until ``user`` has at least ``count`` mails from the bot: all of them, in order."""
    while True:
        try:
            inbox = await trio.to_thread.run_sync(_inbox, mail, user)
        except imaplib.IMAP4.error:  # Dovecot racing a delivery into the Maildir
            await trio.sleep(0.1)
            continue
        found = [m for m in inbox if str(m["From"]) == BOT]
        if len(found) >= count:
            return found
        await trio.sleep(0.1)


def body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).strip()


async def wait_up(plane: ControlPlaneHandles) -> None:
    async with plane.events.subscribe("channel.up", since=0) as ups:
        await next_event(ups)


async def received_count(plane: ControlPlaneHandles) -> int:
    return sum(1 for e in await published(plane)
               if getattr(e, "type", None) == "message.received")


async def test_conversation_threads_and_who_may_write(
        mail: MailServers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await send(mail, compose(ALICE, "old", "from before the bot started", "<old@a>"))
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [settings(mail)]) as plane:
            await wire(plane, ChatWiring("email", ALICE))
            await wait_up(plane)
            await send(mail, compose(ALICE, "Plans", "hello bot", "<m1@a.test>"))
            (first,) = await replies_to(mail, "alice", 1)
            assert body(first) == "echo: hello bot"
            assert str(first["Subject"]) == "Re: Plans"
            assert str(first["In-Reply-To"]) == "<m1@a.test>"
            assert str(first["Auto-Submitted"]) == "auto-replied"
            assert str(first["Message-ID"]).startswith("<ironclaw-")
            # Not allowed, automatic, or forged by our server's verdict: never read.
            await send(mail, compose(MALLORY, "hi", "let me in", "<x1@m.test>"))
            await send(mail, compose(ALICE, "away", "I am on holiday", "<x2@a.test>",
                                     headers={"Auto-Submitted": "auto-replied"}))
            # An HTML-only reply in the thread, quoting the bot: its new text only.
            thread = {"In-Reply-To": str(first["Message-ID"]),
                      "References": f"<m1@a.test> {first['Message-ID']}"}
            await send(mail, compose(
                ALICE, "Re: Plans", "", "<m2@a.test>", headers=thread,
                html="<p>Sounds <b>good</b> &amp; thanks</p><blockquote>echo: hello bot"
                     "</blockquote>"))
            replies = await replies_to(mail, "alice", 2)
            assert body(replies[1]) == "echo: Sounds good & thanks"
            # The mail answered, after the thread's root.
            assert str(replies[1]["In-Reply-To"]) == "<m2@a.test>"
            assert str(replies[1]["References"]) == "<m1@a.test> <m2@a.test>"
            assert str(replies[1]["Subject"]) == "Re: Plans"
            # A plain reply quoting under an attribution line: the quote is cut.
            await send(mail, compose(
                ALICE, "Re: Plans", "Then Friday.\n\nOn Mon, 7 Dec 2026, IronClaw "
                f"<{BOT}> wrote:\n> echo: hello bot\n", "<m3@a.test>", headers=thread))
            replies = await replies_to(mail, "alice", 3)
            assert body(replies[2]) == "echo: Then Friday."
            assert await received_count(plane) == 3
            assert_secret_absent(PASSWORDS["bot"], caplog, await published(plane))


@pytest.mark.parametrize("mode", [SessionMode.PER_THREAD, SessionMode.AGENT_SHARED],
                         ids=lambda mode: mode.value)
async def test_a_reply_stays_in_its_thread_in_every_session_mode(
        mail: MailServers, tmp_path: Path, mode: SessionMode) -> None:
    """The shared mode is the conversation above."""
    start = len(await replies_to(mail, "alice", 0))
    asked = f"<{mode.value}-2@a.test>"
    with trio.fail_after(60):
        async with open_channel_plane(tmp_path, [settings(mail)],
                                      [ChatWiring("email", ALICE, session_mode=mode)]) as plane:
            await wait_up(plane)
            await send(mail, compose(ALICE, "Re: Plans", "in the thread", asked, headers={
                "In-Reply-To": "<root@a.test>", "References": "<root@a.test>"}))
            reply = (await replies_to(mail, "alice", start + 1))[start]
    assert body(reply) == "echo: in the thread"
    assert str(reply["In-Reply-To"]) == asked
    assert str(reply["References"]) == f"<root@a.test> {asked}"


async def test_restart_loses_nothing_and_repeats_nothing(
        mail: MailServers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wiring = ChatWiring("email", ALICE)
    start = len(await replies_to(mail, "alice", 0))
    with trio.fail_after(90):
        async with open_channel_plane(tmp_path, [settings(mail)], [wiring]) as plane:
            await wait_up(plane)
            await send(mail, compose(ALICE, "a", "one", "<r1@a.test>"))
            await replies_to(mail, "alice", start + 1)
        await send(mail, compose(ALICE, "b", "two", "<r2@a.test>"))
        await send(mail, compose(ALICE, "c", "three", "<r3@a.test>"))
        async with open_channel_plane(tmp_path, [settings(mail)], [wiring]) as plane:
            await replies_to(mail, "alice", start + 3)
            await send(mail, compose(ALICE, "d", "after", "<r4@a.test>"))  # a sentinel
            replies = await replies_to(mail, "alice", start + 4)
            assert await received_count(plane) == 3
            assert_secret_absent(PASSWORDS["bot"], caplog, await published(plane))
    bodies = [body(m) for m in replies[start:]]
    # Mail has no order between two submissions: the server may deliver them either way.
    assert bodies[0] == "echo: one" and bodies[3] == "echo: after"
    assert sorted(bodies[1:3]) == ["echo: three", "echo: two"]


# -- reading mail, without servers --------------------------------------------------------

def _raw(**headers: str) -> bytes:
    text = headers.pop("text", "hi")
    lines = [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + text + "\r\n").encode()


def test_read_mail_senders_authentication_and_threads() -> None:
    def read(raw: bytes, authserv: str | None = "mx.test") -> Any:
        return read_mail(raw, me=BOT, allowed=(ALICE, "@friends.test"),
                         authserv_id=authserv)

    mail = read(_raw(From=f"Alice <{ALICE}>", Subject="Hi", Message_ID="<a@x>",
                     References="<root@x> <mid@x>", In_Reply_To="<mid@x>"))
    assert (mail.sender, mail.message_id, mail.thread_root, mail.text) == (
        ALICE, "<a@x>", "<root@x>", "hi")
    assert read(_raw(From="bob@friends.test")) is not None  # a whole domain
    assert read(_raw(From=MALLORY)) is None
    assert read(_raw(From=BOT)) is None  # our own
    assert read(_raw(From=f"{ALICE}, {MALLORY}")) is None  # two senders: whose?
    assert read(_raw(From=ALICE, Precedence="bulk")) is None
    assert read(_raw(From=ALICE, Authentication_Results="mx.test; dmarc=fail")) is None
    assert read(_raw(From=ALICE, Authentication_Results="mx.test; spf=fail dkim=none")
                ) is None
    assert read(_raw(From=ALICE, Authentication_Results="mx.test; dkim=pass")) is not None
    # Stamped by some other server (or the sender): not ours to believe.
    assert read(_raw(From=ALICE, Authentication_Results="evil.test; dmarc=fail")
                ) is not None
    assert read(b"\xff\xfe garbage") is None


def test_html_quotes_and_reply_ids() -> None:
    assert html_to_text("<style>p{}</style><p>Hello&nbsp;<b>you</b></p><br>bye"
                        "<script>x()</script>") == "Hello you\n\nbye"
    assert trim_quoted("Yes, do it.\n\nOn Mon, 7 Dec 2026, Bot <b@x> wrote:\n> old") \
        == "Yes, do it."
    assert trim_quoted("Fine\nOn Mon, 7 Dec 2026 at 10:00, Bot\n<b@x> wrote:\n> old") \
        == "Fine"
    assert trim_quoted("Top\n-- \nsignature") == "Top"
    assert trim_quoted("> only a quote") == "> only a quote"  # nothing new: keep it all
    assert reply_message_id("o#1", "x.test") == reply_message_id("o#1", "x.test") \
        != reply_message_id("o#2", "x.test")
    assert authentication_ok(EmailMessage(), "mx.test")


def test_check_settings() -> None:
    def problems(options: Mapping[str, object]) -> list[str]:
        return email_channel.check_settings(ChannelSettings(
            "email", "", options, environ={"IRONCLAW_EMAIL_PASSWORD": "pw"}))

    good = {"address": "bot@example.org", "imap_server": "mail.example.org",
            "allowed_senders": ["alice@example.org"]}
    assert problems(good) == []
    assert "allowed_senders" in problems({**good, "allowed_senders": []})[0]
    assert "loopback" in problems({**good, "imap_tls": "none"})[0]
    assert "idle_s" in problems({**good, "idle_s": 0})[0]


# -- figures (long) -----------------------------------------------------------------------

def _wait_count_from_bot(mail: MailServers, user: str, count: int) -> None:
    """Until ``user`` has ``count`` mails from the bot, over one IMAP session (a login
    per look would load the server more than the traffic being measured)."""
    conn = imaplib.IMAP4("127.0.0.1", mail.imap_port, timeout=10)
    try:
        conn.login(user, PASSWORDS[user])
        conn.select("INBOX", readonly=True)
        while True:
            conn.noop()
            _, data = conn.uid("SEARCH", "FROM", f'"{BOT}"')
            if len((data[0] or b"").split()) >= count:
                return
            time.sleep(0.005)
    finally:
        conn.logout()


async def count_from_bot(mail: MailServers, user: str, count: int) -> None:
    while True:
        try:
            await trio.to_thread.run_sync(_wait_count_from_bot, mail, user, count)
            return
        except (imaplib.IMAP4.error, OSError):  # the servers restarting
            await trio.sleep(0.1)


@pytest.mark.long
@pytest.mark.timeout(1200)
async def test_round_trip_and_recovery_figures(mail: MailServers, tmp_path: Path) -> None:
    """Reply round trip over 100 mails, p50 and p99, and the time from a restart of
    both servers to the first answered mail. Printed; run with ``-s -m long``."""
    import statistics

    start = len(await replies_to(mail, "alice", 0))
    with trio.fail_after(900):
        async with open_channel_plane(tmp_path, [settings(mail)],
                                      [ChatWiring("email", ALICE)]) as plane:
            await wait_up(plane)
            rounds: list[float] = []
            for n in range(100):
                began = time.perf_counter()
                await send(mail, compose(ALICE, f"n{n}", f"m{n}", f"<fig{n}@a.test>"))
                await count_from_bot(mail, "alice", start + n + 1)
                rounds.append(time.perf_counter() - began)
            await trio.to_thread.run_sync(mail.restart)
            began = time.perf_counter()
            await send(mail, compose(ALICE, "back", "after the restart", "<fig-r@a.test>"))
            await count_from_bot(mail, "alice", start + 101)
            recovery = time.perf_counter() - began
    quantiles = statistics.quantiles(rounds, n=100)
    print(f"\nemail/dovecot+opensmtpd round trip: p50 {quantiles[49] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms; recovery after restart {recovery:.2f} s")
