"""A person on a real XMPP server, for the XMPP channel's tests: a minimal client of its
own (no code shared with the adapter under test), on Trio sockets.

It logs in with SASL PLAIN (the test server allows it on loopback), binds a resource,
sends presence, joins rooms, says things, and records every ``<message/>`` it gets.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from xml.sax.saxutils import escape, quoteattr

import attrs
import trio

CLIENT = "{jabber:client}"
_ids = itertools.count()


@attrs.frozen
class Received:
    sender: str
    kind: str
    body: str | None
    ident: str | None
    thread: str | None
    origin_id: str | None


class XmppPerson:
    def __init__(self, stream: trio.abc.Stream, jid: str, domain: str) -> None:
        self.stream = stream
        self.jid = jid
        self.domain = domain
        self.received: list[Received] = []
        self.iq_answers: dict[str, ET.Element] = {}
        self._changed = trio.lowlevel.ParkingLot()
        self._parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._ready: list[ET.Element] = []

    async def _send(self, text: str) -> None:
        await self.stream.send_all(text.encode())

    async def _next(self) -> ET.Element:
        while not self._ready:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("server closed")
            self._parser.feed(data)
            for kind, element in self._parser.read_events():  # type: ignore[misc]
                assert isinstance(element, ET.Element)
                self._depth += 1 if kind == "start" else -1
                if kind == "end" and self._depth == 1:
                    self._ready.append(element)
        return self._ready.pop(0)

    async def _open_stream(self) -> ET.Element:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        await self._send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                         "xmlns:stream='http://etherx.jabber.org/streams' "
                         f"to='{self.domain}' version='1.0'>")
        return await self._next()  # features

    async def login(self, password: str, resource: str) -> None:
        await self._open_stream()
        local = self.jid.split("@")[0]
        token = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
        await self._send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                         f"mechanism='PLAIN'>{token}</auth>")
        answer = await self._next()
        assert answer.tag.endswith("success"), answer.tag
        await self._open_stream()
        await self._send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
                         f"xmpp-bind'><resource>{resource}</resource></bind></iq>")
        await self._next()
        await self._send("<presence/>")

    async def run(self) -> None:
        with contextlib.suppress(EOFError, trio.BrokenResourceError,
                                 trio.ClosedResourceError):
            while True:
                element = await self._next()
                if element.tag == f"{CLIENT}iq" and element.get("id"):
                    self.iq_answers[str(element.get("id"))] = element
                    self._changed.unpark_all()
                if element.tag == f"{CLIENT}message":
                    sid = element.find("{urn:xmpp:sid:0}origin-id")
                    self.received.append(Received(
                        element.get("from", ""), element.get("type", "normal"),
                        element.findtext(f"{CLIENT}body"), element.get("id"),
                        element.findtext(f"{CLIENT}thread"),
                        None if sid is None else sid.get("id")))
                    self._changed.unpark_all()

    async def join(self, room: str, nick: str) -> None:
        await self._send(f"<presence to={quoteattr(f'{room}/{nick}')}><x xmlns="
                         "'http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>"
                         "</presence>")

    async def say(self, to: str, body: str, *, group: bool = False,
                  thread: str | None = None, ident: str | None = None) -> str:
        ident = ident or f"p{next(_ids)}"
        thread_xml = f"<thread>{escape(thread)}</thread>" if thread else ""
        await self._send(f"<message to={quoteattr(to)} type="
                         f"'{'groupchat' if group else 'chat'}' id={quoteattr(ident)}>"
                         f"<body>{escape(body)}</body>{thread_xml}</message>")
        return ident

    async def query(self, iq: str, ident: str) -> ET.Element:
        """Send ``iq`` (whose id is ``ident``) and wait for its answer."""
        await self._send(iq)
        while ident not in self.iq_answers:
            await self._changed.park()
        return self.iq_answers.pop(ident)

    async def share(self, to: str, url: str) -> None:
        """A file link, as clients send an uploaded file (XEP-0066)."""
        ident = f"p{next(_ids)}"
        await self._send(f"<message to={quoteattr(to)} type='chat' id={quoteattr(ident)}>"
                         f"<body>{escape(url)}</body><x xmlns='jabber:x:oob'><url>"
                         f"{escape(url)}</url></x></message>")

    async def wait_for(self, match: Callable[[Received], bool], count: int = 1
                       ) -> list[Received]:
        while True:
            found = [r for r in self.received if match(r)]
            if len(found) >= count:
                return found
            await self._changed.park()


@contextlib.asynccontextmanager
async def open_xmpp_person(port: int, jid: str, password: str, *,
                           resource: str = "phone") -> AsyncIterator[XmppPerson]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    person = XmppPerson(stream, jid, jid.split("@")[1])
    async with stream, trio.open_nursery() as nursery:
        await person.login(password, resource)
        nursery.start_soon(person.run)
        yield person
        nursery.cancel_scope.cancel()
