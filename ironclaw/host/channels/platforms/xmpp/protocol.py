"""XMPP's wire format, without I/O: the stream parser, the stanzas we write, and what a
received ``<message/>`` means for the agent.

Everything the server relays is someone else's input, so the parser is strict and
bounded: no DTDs, comments or processing instructions (RFC 6120 §11.1 forbids them;
refusing ``<!`` and ``<?`` after the stream header also keeps entity expansion out),
and at most :data:`MAX_STANZA_BYTES` per top-level element (above Prosody's own
limits, so a stanza the server relays does not trip it). A violation ends the stream with
:class:`XmppProtocolError`.

A stanza nested deeper than :data:`MAX_DEPTH` is not an error: the server relays what
a hostile sender wrote, and after a reconnect it would relay it again, so ending the
stream would wedge the channel. It comes out as an empty element of the same name
(stream management still counts it), which nothing reads as a message.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import attrs

__all__ = [
    "MAX_STANZA_BYTES",
    "NS",
    "ClientMessage",
    "StreamParser",
    "XmppProtocolError",
    "bare",
    "is_valid_jid",
    "message_stanza",
    "parse_message",
    "resource_of",
    "stream_header",
]

MAX_STANZA_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_JID_CHARS = 3071  # RFC 7622: three parts of at most 1023 bytes each


class NS:
    STREAM = "http://etherx.jabber.org/streams"
    CLIENT = "jabber:client"
    TLS = "urn:ietf:params:xml:ns:xmpp-tls"
    SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
    BIND = "urn:ietf:params:xml:ns:xmpp-bind"
    SM = "urn:xmpp:sm:3"
    PING = "urn:xmpp:ping"
    MUC = "http://jabber.org/protocol/muc"
    MUC_USER = "http://jabber.org/protocol/muc#user"
    SID = "urn:xmpp:sid:0"
    DELAY = "urn:xmpp:delay"
    STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class XmppProtocolError(Exception):
    """The peer broke the protocol (or our bounds); the text is safe to log."""


def tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class StreamParser:
    """Feed bytes in; take complete top-level elements (stanzas) out.

    One parser per stream: after STARTTLS and after SASL the stream restarts and a new
    parser is made. The stream's root element is :attr:`root` once its start tag is in.
    """

    def __init__(self) -> None:
        self._parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(
            events=("start", "end"))
        self._depth = 0
        self._too_deep = False
        self._pending_bytes = 0
        self._previous = b""
        self.root: ET.Element | None = None
        self.closed = False

    def feed(self, data: bytes) -> list[ET.Element]:
        window = self._previous + data
        if b"<!" in window or (self.root is not None and b"<?" in window):
            raise XmppProtocolError("the stream carries a DTD, comment or instruction")
        self._previous = data[-1:]
        self._pending_bytes += len(data)
        if self._pending_bytes > MAX_STANZA_BYTES:
            raise XmppProtocolError("a stanza exceeds the size limit")
        try:
            self._parser.feed(data)
            events = list(self._parser.read_events())
        except ET.ParseError:
            raise XmppProtocolError("the stream is not well-formed XML") from None
        stanzas: list[ET.Element] = []
        for kind, element in events:  # type: ignore[misc]  # (event, Element) pairs
            assert isinstance(element, ET.Element)
            if kind == "start":
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    self._too_deep = True
                if self._depth == 1:
                    self.root = element
            else:
                self._depth -= 1
                if self._depth == 1:
                    if self.root is not None:
                        self.root.remove(element)  # keep nothing we are done with
                    if self._too_deep:
                        element, self._too_deep = ET.Element(element.tag), False
                    stanzas.append(element)
                    self._pending_bytes = 0
                elif self._depth == 0:
                    self.closed = True
        if self._depth <= 1:
            self._pending_bytes = 0
        return stanzas


def stream_header(domain: str) -> bytes:
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS.STREAM}' to={quoteattr(domain)} version='1.0'>"
            ).encode()


_JID = re.compile(r"^(?:[^@/\s]{1,1023}@)?[^@/\s]{1,1023}(?:/[^\s].{0,1022})?$", re.S)


def is_valid_jid(jid: str) -> bool:
    return len(jid) <= MAX_JID_CHARS and _JID.match(jid) is not None


def bare(jid: str) -> str:
    return jid.split("/", 1)[0]


def resource_of(jid: str) -> str | None:
    parts = jid.split("/", 1)
    return parts[1] if len(parts) == 2 else None


def message_stanza(to: str, body: str, *, kind: str, stanza_id: str,
                   thread: str | None = None, extra: str = "") -> bytes:
    """A ``<message/>`` with an ``origin-id`` (XEP-0359) equal to its id, so that a
    client can recognise a resend of the same part. ``extra`` is more XML to carry
    (already escaped), such as an out-of-band link."""
    parts = [f"<message to={quoteattr(to)} type={quoteattr(kind)} id={quoteattr(stanza_id)}>",
             f"<body>{escape(body)}</body>", extra,
             f"<origin-id xmlns='{NS.SID}' id={quoteattr(stanza_id)}/>"]
    if thread is not None:
        parts.append(f"<thread>{escape(thread)}</thread>")
    parts.append("</message>")
    return "".join(parts).encode()


@attrs.frozen
class ClientMessage:
    """A message someone sent that the agent may see."""

    chat: str  # a room's bare JID, or the peer's bare JID for a one-to-one chat
    sender: str  # the peer's bare JID; in a room, the occupant (room/nick) or real JID
    nick: str | None  # the occupant's nick in a room
    body: str
    group: bool
    thread: str | None
    dedup_id: str | None  # a server-assigned id (XEP-0359) or the sender's own id
    message_id: str | None


def _text(element: ET.Element | None) -> str | None:
    return None if element is None else (element.text or "")


def parse_message(stanza: ET.Element, me: str, rooms: dict[str, str]) -> ClientMessage | None:
    """What a received ``<message/>`` says, or None when the agent should not see it:
    errors, headlines, bodiless messages (chat states, receipts), a room's subject or
    its own notices, our own messages echoed by a room. ``me`` is our bare JID;
    ``rooms`` maps each joined room's bare JID to our nick in it."""
    if stanza.tag != tag(NS.CLIENT, "message"):
        return None
    kind = stanza.get("type", "normal")
    sender_full = stanza.get("from", "")
    body = _text(stanza.find(tag(NS.CLIENT, "body")))
    if kind not in ("chat", "normal", "groupchat") or body is None or not body.strip():
        return None
    if not is_valid_jid(sender_full):
        return None
    chat = bare(sender_full)
    thread = _text(stanza.find(tag(NS.CLIENT, "thread")))
    thread = thread.strip()[:256] or None if thread else None
    message_id = stanza.get("id") or None
    if kind == "groupchat":
        nick = resource_of(sender_full)
        if chat not in rooms or nick is None or nick == rooms[chat]:
            return None  # not a room we joined, the room itself, or our own echo
        sid = _stanza_id(stanza, chat)
        fallback = f"{sender_full}/{message_id}" if message_id else None
        return ClientMessage(chat, sender_full, nick, body, True, thread, sid or fallback,
                             message_id)
    if chat == me or chat in rooms:
        return None  # our own other resources; private messages through a room
    sid = _stanza_id(stanza, me)
    fallback = f"{sender_full}/{message_id}" if message_id else None
    return ClientMessage(chat, chat, None, body, False, thread, sid or fallback, message_id)


def _stanza_id(stanza: ET.Element, by: str) -> str | None:
    """A server-assigned id, trusted only when stamped by ``by`` (XEP-0359 §6: anyone
    can put a stanza-id in a message; only the one by the entity we trust counts)."""
    for element in stanza.findall(tag(NS.SID, "stanza-id")):
        if element.get("by") == by and element.get("id"):
            return f"{by}#{element.get('id')}"
    return None


def is_mentioned(body: str, nick: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(nick)}(?!\w)", body, re.IGNORECASE) is not None
