"""XMPP files: out-of-band links in (XEP-0066), HTTP File Upload out (XEP-0363).

In: a message may carry ``<x xmlns='jabber:x:oob'><url>…</url></x>``; by convention its
body is the same URL, in which case the agent sees no text besides the file. The URL
is fetched only when its origin is one of the channel's ``file_hosts`` (the upload
service of the operator's own server, say): a link into anyone else's web server is
refused before any request, since any sender can put any URL there.

Out: with ``upload_service`` set (the JID of the server's HTTP upload component), a
file asks the service for a slot (``<request filename size content-type>``), PUTs the
bytes to the slot's ``put`` URL (with only the headers XEP-0363 allows through:
``Authorization``, ``Cookie``, ``Expires``), and sends a message whose body is the
``get`` URL, with the same URL in an OOB element and the caption in a second message
part. The message's id is the part's stanza id, so a resend is recognisable; the slot
and the PUT may repeat on a retry, the message is sent once (the delivery ledger).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

import attrs
import httpx

from ironclaw.host.attachments import (
    InboundAttachment,
    Origin,
    OutboundFile,
    origin_of,
    platform_attachment,
)
from ironclaw.host.channels.base import DeliveryFailed
from ironclaw.host.channels.platform import delivery_failure

from .protocol import message_stanza, tag

__all__ = ["OOB", "UPLOAD", "Slot", "file_message", "oob_attachment", "parse_slot",
           "put_file", "slot_request"]

OOB = "jabber:x:oob"
UPLOAD = "urn:xmpp:http:upload:0"
_PASSED_HEADERS = frozenset({"authorization", "cookie", "expires"})
_PUT_TIMEOUT_S = 60.0


@attrs.frozen
class Slot:
    put_url: str
    headers: tuple[tuple[str, str], ...]
    get_url: str


def oob_attachment(stanza: ET.Element, body: str, http: httpx.AsyncClient,
                   origins: Iterable[Origin]) -> tuple[str, tuple[InboundAttachment, ...]]:
    """The text left for the agent and the message's OOB file, if it has one."""
    url = stanza.findtext(f"{tag(OOB, 'x')}/{tag(OOB, 'url')}")
    if not url or len(url) > 4096:
        return body, ()
    name = url.rstrip("/").rsplit("/", 1)[-1] or "file"
    text = "" if body.strip() == url.strip() else body
    return text, (platform_attachment(http, url.strip(), declared_name=name[:255],
                                      declared_type=None, origins=origins),)


def slot_request(service: str, ident: str, file: OutboundFile) -> bytes:
    return (f"<iq type='get' id={quoteattr(ident)} to={quoteattr(service)}>"
            f"<request xmlns='{UPLOAD}' filename={quoteattr(file.name)} "
            f"size='{file.size}' content-type={quoteattr(file.media_type)}/></iq>").encode()


def parse_slot(iq: ET.Element) -> Slot | None:
    if iq.get("type") != "result":
        return None
    slot = iq.find(tag(UPLOAD, "slot"))
    put = None if slot is None else slot.find(tag(UPLOAD, "put"))
    get = None if slot is None else slot.find(tag(UPLOAD, "get"))
    if put is None or get is None or not put.get("url") or not get.get("url"):
        return None
    headers = tuple((h.get("name", ""), (h.text or "").strip())
                    for h in put.findall(tag(UPLOAD, "header"))
                    if h.get("name", "").lower() in _PASSED_HEADERS)
    return Slot(str(put.get("url")), headers, str(get.get("url")))


async def put_file(http: httpx.AsyncClient, slot: Slot, file: OutboundFile,
                   origins: Iterable[Origin]) -> None:
    allowed = set(origins)
    if origin_of(slot.put_url) not in allowed or origin_of(slot.get_url) not in allowed:
        raise DeliveryFailed("xmpp upload: the slot is not on a configured file host",
                             retryable=False)
    headers = {"Content-Type": file.media_type, **dict(slot.headers)}
    try:
        response = await http.put(slot.put_url, content=file.data, headers=headers,
                                  timeout=_PUT_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"xmpp upload: {type(exc).__name__}", retryable=True) from None
    failure = delivery_failure(response, "xmpp upload")
    if failure is not None:
        raise failure


def file_message(to: str, get_url: str, caption: str, *, kind: str, stanza_id: str,
                 thread: str | None) -> bytes:
    """The file as XEP-0066 prescribes: the body is the URL (clients show it inline),
    the caption follows in a line of its own."""
    body = f"{get_url}\n{caption}" if caption.strip() else get_url
    return message_stanza(to, body, kind=kind, stanza_id=stanza_id, thread=thread,
                          extra=f"<x xmlns='{OOB}'><url>{escape(get_url)}</url></x>")
