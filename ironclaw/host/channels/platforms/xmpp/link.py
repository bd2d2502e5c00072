"""One XMPP client connection on Trio sockets: connect, STARTTLS, SASL, resume or bind,
stream management, read, confirmed writes, keepalive.

:meth:`Link.run` owns the socket for the connection's whole life and raises
:class:`XmppLinkLost` when it ends; it never reconnects (the channel supervisor does).

Stream management (XEP-0198), where the server offers it. The server numbers the
stanzas it sends us and keeps each until we acknowledge it; a connection that dies
leaves the session *hibernating* on the server (Prosody: 10 minutes), and the next
connection *resumes* it, getting every unacknowledged stanza again. We acknowledge
only what is durable: :attr:`Link.acked_in` is moved by the adapter once a stanza's
effect is committed (a message routed, its cursor saved), never by the reader. So a
crash, a dropped connection or a control-plane restart within the hibernation time
loses nothing: the resume point is saved in host.db with every message. For the same
reason a shutdown does not close the stream (that would end the session): it drops
the socket and leaves the session to hibernate.

Confirmed sends: a message counts as delivered once the server has acknowledged it
(``<a h>`` covering it, asked for with ``<r/>``), or, without stream management, once a
ping sent after it is answered (a server handles one client's stanzas in order).
"""

from __future__ import annotations

import base64
import logging
import secrets
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import attrs
import trio

from ironclaw.host.channels.base import ChannelError, DeliveryFailed

from .config import XmppConfig
from .protocol import NS, StreamParser, XmppProtocolError, bare, stream_header, tag

__all__ = ["Inbound", "Link", "SmResume", "Unconfirmed", "XmppLinkLost", "XmppRefused",
           "open_tcp"]

logger = logging.getLogger(__name__)

READ_BYTES = 65536
INBOUND_QUEUE = 64


class XmppLinkLost(ChannelError):
    """The connection ended; the text is safe to log (no server-supplied free text)."""


class XmppRefused(XmppLinkLost):
    """The server refused our credentials or offers nothing we can use."""


class Unconfirmed(DeliveryFailed):
    """The connection went while a stanza waited for the server's acknowledgement.
    Whether the server took it shows when the session is resumed: its ``<resumed h>``
    counts our stanzas it handled (``number`` in session ``session_id``)."""

    def __init__(self, session_id: str | None, number: int) -> None:
        super().__init__("the XMPP server did not confirm the message", retryable=True)
        self.session_id = session_id
        self.number = number


@attrs.frozen
class SmResume:
    """Where a hibernating session can be resumed: its id and how many of the
    server's stanzas we have handled durably."""

    session_id: str
    handled: int

    def encode(self) -> str:
        return f"{self.handled} {self.session_id}"

    @classmethod
    def decode(cls, text: str | None) -> SmResume | None:
        if not text:
            return None
        count, _, session_id = text.partition(" ")
        if not count.isdigit() or not session_id:
            return None
        return cls(session_id, int(count))


@attrs.frozen
class Inbound:
    """A stanza from the server, numbered for stream management (0 without it)."""

    position: int
    stanza: ET.Element


async def open_tcp(config: XmppConfig) -> trio.abc.Stream:
    try:
        return await trio.open_tcp_stream(config.server, config.port)
    except OSError as exc:
        raise XmppLinkLost(f"could not connect to the XMPP server ({type(exc).__name__})"
                           ) from None


class Link:
    """One connection. ``run`` once; read the attributes while it runs."""

    def __init__(self, config: XmppConfig, resume: SmResume | None,
                 connect: Callable[[XmppConfig], Awaitable[trio.abc.Stream]] = open_tcp
                 ) -> None:
        self.config = config
        self._resume = resume
        self._connect = connect
        self._stream: trio.abc.Stream | None = None
        self._parser = StreamParser()
        self._backlog: list[ET.Element] = []  # arrived during login, for the reader
        self._unread: list[ET.Element] = []  # parsed, not yet looked at
        self._write_lock = trio.Lock()
        self.ready = trio.Event()
        self.closed = trio.Event()
        self.jid: str | None = None  # our full JID once bound
        self.resumed = False
        self.resumed_acked = 0  # on resume: how many of our stanzas the server had
        self.sm_id: str | None = None
        self.received = 0  # the server's stanzas since enable/resume
        self.acked_in = 0  # of those, handled durably (moved by the adapter)
        self._sent = 0  # our stanzas since enable/resume
        self._server_acked = 0
        self._ack_changed = trio.lowlevel.ParkingLot()
        self._pongs: dict[str, trio.Event] = {}
        self._answers: dict[str, list[ET.Element]] = {}  # query id -> [its answer]
        self._answered = trio.lowlevel.ParkingLot()
        self._last_heard = 0.0

    @property
    def stream_managed(self) -> bool:
        return self.sm_id is not None

    # -- life --------------------------------------------------------------------------

    async def run(self, inbound: trio.MemorySendChannel[Inbound]) -> None:
        try:
            with trio.fail_after(self.config.connect_timeout):
                await self._open()
            self.ready.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keepalive)
                backlog, self._backlog = self._backlog + self._unread, []
                self._unread = []
                for stanza in backlog:
                    await self._dispatch(stanza, inbound)
                await self._read(inbound)
                raise XmppLinkLost("the server closed the stream")
        except trio.TooSlowError:
            raise XmppLinkLost("the XMPP server did not complete the login in time") from None
        except XmppProtocolError as exc:
            raise XmppLinkLost(f"protocol error: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                ssl.SSLError) as exc:
            raise XmppLinkLost(f"the connection broke ({type(exc).__name__})") from None
        finally:
            self.closed.set()
            self._ack_changed.unpark_all()
            if self._stream is not None:
                # Never a closing </stream:stream>: that would end a resumable session.
                await trio.aclose_forcefully(self._stream)

    async def _open(self) -> None:
        config = self.config
        self._stream = await self._connect(config)
        features = await self._restart_stream()
        if features.find(tag(NS.TLS, "starttls")) is not None and config.tls:
            await self._write(f"<starttls xmlns='{NS.TLS}'/>".encode())
            answer = await self._expect(lambda e: e.tag.startswith(f"{{{NS.TLS}}}"))
            if answer.tag != tag(NS.TLS, "proceed"):
                raise XmppRefused("the server refused STARTTLS")
            await self._start_tls()
            features = await self._restart_stream()
        elif config.tls:
            raise XmppRefused("the server offers no STARTTLS")
        mechanisms = {(m.text or "").strip() for m in features.iter(tag(NS.SASL, "mechanism"))}
        if "PLAIN" not in mechanisms:
            raise XmppRefused("the server offers no SASL PLAIN login")
        local = config.jid.split("@", 1)[0]
        token = base64.b64encode(
            f"\0{local}\0{config.password.reveal()}".encode()).decode()
        await self._write(f"<auth xmlns='{NS.SASL}' mechanism='PLAIN'>{token}</auth>"
                          .encode())
        answer = await self._expect(lambda e: e.tag.startswith(f"{{{NS.SASL}}}"))
        if answer.tag != tag(NS.SASL, "success"):
            raise XmppRefused("the XMPP server refused our credentials")
        features = await self._restart_stream()
        sm_offered = features.find(tag(NS.SM, "sm")) is not None
        if sm_offered and self._resume is not None and await self._try_resume(self._resume):
            return
        await self._bind()
        if sm_offered:
            await self._write(f"<enable xmlns='{NS.SM}' resume='true'/>".encode())
            answer = await self._expect(lambda e: e.tag.startswith(f"{{{NS.SM}}}"))
            if answer.tag == tag(NS.SM, "enabled") and answer.get("id"):
                self.sm_id = answer.get("id")
        await self._send_stanza(b"<presence/>")
        for room in config.rooms:
            await self._send_stanza(
                (f"<presence to='{room}/{config.nick}'><x xmlns='{NS.MUC}'>"
                 "<history maxstanzas='0'/></x></presence>").encode())

    async def _try_resume(self, resume: SmResume) -> bool:
        await self._write(f"<resume xmlns='{NS.SM}' previd='{_attr(resume.session_id)}' "
                          f"h='{resume.handled}'/>".encode())
        answer = await self._expect(lambda e: e.tag.startswith(f"{{{NS.SM}}}"))
        if answer.tag != tag(NS.SM, "resumed"):
            logger.info("xmpp: the previous session could not be resumed; starting anew")
            return False
        self.sm_id, self.resumed = resume.session_id, True
        self.received = self.acked_in = resume.handled
        self._sent = self._server_acked = self.resumed_acked = _count(answer.get("h"))
        self.jid = f"{self.config.jid}/{self.config.resource}"
        return True

    async def _bind(self) -> None:
        await self._write((f"<iq type='set' id='bind'><bind xmlns='{NS.BIND}'><resource>"
                           f"{_attr(self.config.resource)}</resource></bind></iq>").encode())
        answer = await self._expect(lambda e: e.tag == tag(NS.CLIENT, "iq")
                                    and e.get("id") == "bind")
        jid = answer.findtext(f"{{{NS.BIND}}}bind/{{{NS.BIND}}}jid")
        if answer.get("type") != "result" or not jid or bare(jid) != self.config.jid:
            raise XmppRefused("the server did not bind our resource")
        self.jid = jid

    async def _start_tls(self) -> None:
        assert self._stream is not None
        context = ssl.create_default_context()
        if self.config.tls_ca_file:
            context.load_verify_locations(cafile=self.config.tls_ca_file)
        stream = trio.SSLStream(self._stream, context, server_hostname=self.config.domain)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            if isinstance(exc.__cause__ or exc, ssl.SSLCertVerificationError):
                raise XmppRefused("the XMPP server's TLS certificate is not trusted"
                                  ) from None
            raise XmppLinkLost("TLS handshake with the XMPP server failed") from None
        self._stream = stream

    async def _restart_stream(self) -> ET.Element:
        self._parser = StreamParser()
        self._unread = []
        await self._write(stream_header(self.config.domain))
        return await self._expect(lambda e: e.tag == tag(NS.STREAM, "features"))

    async def _expect(self, wanted: Callable[[ET.Element], bool]) -> ET.Element:
        """The next element ``wanted`` picks; anything before it is kept for later."""
        while True:
            while self._unread:
                element = self._unread.pop(0)
                if element.tag == tag(NS.STREAM, "error"):
                    raise XmppLinkLost(f"stream error: {_condition(element)}")
                if wanted(element):
                    return element
                if len(self._backlog) >= INBOUND_QUEUE:
                    raise XmppProtocolError("too many stanzas before the login finished")
                self._backlog.append(element)
            self._unread = await self._receive()

    async def _receive(self) -> list[ET.Element]:
        assert self._stream is not None
        data = bytes(await self._stream.receive_some(READ_BYTES))
        if not data:
            raise XmppLinkLost("the server closed the connection")
        self._last_heard = trio.current_time()
        stanzas = self._parser.feed(data)
        if self._parser.closed:
            raise XmppLinkLost("the server closed the stream")
        return stanzas

    # -- reading -----------------------------------------------------------------------

    async def _read(self, inbound: trio.MemorySendChannel[Inbound]) -> None:
        while True:
            for element in await self._receive():
                await self._dispatch(element, inbound)

    async def _dispatch(self, element: ET.Element, inbound: trio.MemorySendChannel[Inbound]
                        ) -> None:
        name = element.tag
        if name == tag(NS.STREAM, "error"):
            raise XmppLinkLost(f"stream error: {_condition(element)}")
        if name == tag(NS.SM, "r"):
            await self._write(f"<a xmlns='{NS.SM}' h='{self.acked_in}'/>".encode())
            return
        if name == tag(NS.SM, "a"):
            self._server_acked = max(self._server_acked, _count(element.get("h")))
            self._ack_changed.unpark_all()
            return
        if name not in (tag(NS.CLIENT, kind) for kind in ("message", "presence", "iq")):
            return  # a nonza we do not use
        self.received += 1
        if name == tag(NS.CLIENT, "iq"):
            await self._answer_iq(element)
        await inbound.send(Inbound(self.received if self.stream_managed else 0, element))

    async def _answer_iq(self, iq: ET.Element) -> None:
        kind, ident = iq.get("type"), iq.get("id", "")
        if kind == "result" and ident in self._pongs:
            self._pongs.pop(ident).set()
            return
        if kind in ("result", "error") and ident in self._answers:
            self._answers[ident].append(iq)
            self._answered.unpark_all()
            return
        if kind not in ("get", "set"):
            return
        to = iq.get("from")
        target = f" to='{_attr(to)}'" if to else ""
        if kind == "get" and iq.find(tag(NS.PING, "ping")) is not None:
            await self._send_stanza(f"<iq type='result' id='{_attr(ident)}'{target}/>"
                                    .encode())
            return
        await self._send_stanza(
            (f"<iq type='error' id='{_attr(ident)}'{target}><error type='cancel'>"
             f"<service-unavailable xmlns='{NS.STANZAS}'/></error></iq>").encode())

    # -- writing -----------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self._stream is None:
            raise XmppLinkLost("not connected")
        async with self._write_lock:
            await self._stream.send_all(data)

    async def _send_stanza(self, data: bytes) -> int:
        """Write one stanza; its number in the stream-management count."""
        async with self._write_lock:
            assert self._stream is not None
            await self._stream.send_all(data)
            self._sent += 1
            return self._sent

    async def send_confirmed(self, data: bytes) -> None:
        """Send one stanza and return once the server has taken it; raise
        :class:`Unconfirmed` if the connection goes first (or does not answer)."""
        if self.closed.is_set() or not self.ready.is_set():
            raise DeliveryFailed("not connected to the XMPP server", retryable=True)
        number = 0
        try:
            number = await self._send_stanza(data)
            with trio.move_on_after(self.config.ping_timeout):
                if self.stream_managed:
                    await self._write(f"<r xmlns='{NS.SM}'/>".encode())
                    while self._server_acked < number and not self.closed.is_set():
                        await self._ack_changed.park()
                    if self._server_acked >= number:
                        return
                elif await self._ping():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, XmppLinkLost):
            pass
        raise Unconfirmed(self.sm_id, number)

    async def query(self, data: bytes, ident: str) -> ET.Element:
        """Send an ``<iq>`` whose id is ``ident``; its answer (a result or an error).
        Raises DeliveryFailed if none comes within the ping timeout."""
        if self.closed.is_set() or not self.ready.is_set():
            raise DeliveryFailed("not connected to the XMPP server", retryable=True)
        answer = self._answers[ident] = []
        try:
            await self._send_stanza(data)
            with trio.move_on_after(self.config.ping_timeout):
                while not answer and not self.closed.is_set():
                    await self._answered.park()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            del self._answers[ident]
        if not answer:
            raise DeliveryFailed("the XMPP server did not answer a query", retryable=True)
        return answer[0]

    async def _ping(self) -> bool:
        ident = "ping-" + secrets.token_hex(6)
        pong = self._pongs[ident] = trio.Event()
        await self._send_stanza((f"<iq type='get' id='{ident}' to='{self.config.domain}'>"
                                 f"<ping xmlns='{NS.PING}'/></iq>").encode())
        with trio.move_on_after(self.config.ping_timeout):
            await pong.wait()
        self._pongs.pop(ident, None)
        return pong.is_set()

    async def _keepalive(self) -> None:
        """After ``ping_interval`` without a word from the server, ask for one; give the
        link up if nothing comes within ``ping_timeout``."""
        while True:
            quiet_until = self._last_heard + self.config.ping_interval
            if trio.current_time() < quiet_until:
                await trio.sleep_until(quiet_until)
                continue
            asked = trio.current_time()
            if self.stream_managed:
                await self._write(f"<r xmlns='{NS.SM}'/>".encode())
            else:
                ident = "ping-" + secrets.token_hex(6)
                await self._send_stanza((f"<iq type='get' id='{ident}' "
                                         f"to='{self.config.domain}'><ping xmlns='{NS.PING}'"
                                         "/></iq>").encode())
            await trio.sleep(self.config.ping_timeout)
            if self._last_heard < asked:
                raise XmppLinkLost("the XMPP server stopped answering")


def _count(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


def _condition(element: ET.Element) -> str:
    for child in element:
        name = child.tag.rsplit("}", 1)[-1]
        if name != "text":
            return name[:64]
    return "unknown"
