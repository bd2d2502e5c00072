"""Reading and writing mail, without I/O: who may write to the agent, what the text is,
which thread a message belongs to, and the reply.

Every message is someone else's input: parsing never raises on a malformed one (it is
skipped), the text is capped, and a sender counts only if it is on the allow list and,
where our own receiving server stamped an ``Authentication-Results`` header, that
header does not say the sender was forged.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import html
import re
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser

import attrs

from ironclaw.host.attachments import InboundAttachment, OutboundFile

from .files import attach, mail_attachments

__all__ = ["IncomingMail", "html_to_text", "read_mail", "reply_message_id",
           "sender_allowed", "trim_quoted", "write_reply"]

MAX_TEXT_CHARS = 20_000
MAX_ID_CHARS = 512


@attrs.frozen
class IncomingMail:
    sender: str  # the From address, lower-case
    message_id: str | None  # "<...>"
    thread_root: str | None  # the first of References, else In-Reply-To, else own id
    subject: str
    text: str
    attachments: tuple[InboundAttachment, ...] = ()


def _address(value: str) -> str | None:
    addresses = email.utils.getaddresses([value])
    if len(addresses) != 1:
        return None
    address = addresses[0][1].strip().lower()
    if address.count("@") != 1 or len(address) > 254 or any(c.isspace() for c in address):
        return None
    return address


def _ids(value: str | None) -> list[str]:
    return [f"<{m}>" for m in re.findall(r"<([^<>\s]{1,500})>", value or "")]


def sender_allowed(sender: str, allowed: tuple[str, ...]) -> bool:
    """``allowed`` holds addresses (``alice@example.org``) and whole domains
    (``@example.org``)."""
    domain = "@" + sender.rsplit("@", 1)[1]
    return sender in allowed or domain in allowed


def authentication_ok(message: EmailMessage, authserv_id: str | None) -> bool:
    """False when our receiving server's ``Authentication-Results`` (the topmost one,
    and only with the configured ``authserv_id``) reports a forged or unverified
    sender: DMARC failed, or none of DMARC, DKIM and SPF passed. No such header: True
    (the server does not check; the allow list alone decides)."""
    headers = message.get_all("Authentication-Results") or []
    if not headers:
        return True
    top = str(headers[0])
    server = top.split(";", 1)[0].strip().split()[0] if top.strip() else ""
    if authserv_id is not None and server.lower() != authserv_id.lower():
        return True  # not stamped by our server: a sender could have written it
    results = dict(re.findall(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)", top.lower()))
    if results.get("dmarc") == "fail":
        return False
    return any(results.get(method) == "pass" for method in ("dmarc", "dkim", "spf"))


class _TextExtractor(HTMLParser):
    _BREAKS = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
               "blockquote", "pre", "table"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._quote_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        if tag == "blockquote":
            self._quote_depth += 1
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        if tag == "blockquote" and self._quote_depth:
            self._quote_depth -= 1
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping and not self._quote_depth:  # quoted replies are dropped
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(markup[:MAX_TEXT_CHARS * 10])
    extractor.close()
    text = "".join(extractor.parts)
    lines = [line.strip() for line in html.unescape(text).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_ATTRIBUTION = re.compile(r"^(On\b.{0,200}\bwrote:|Le\b.{0,200}\ba écrit\s?:|Am\b.{0,200}"
                          r"\bschrieb\b.{0,80}:|-{2,}\s*Original Message\s*-{2,}|"
                          r"_{10,})\s*$", re.IGNORECASE)


def trim_quoted(text: str) -> str:
    """The new part of a reply: cut at the quoted original (an "On ... wrote:" line,
    a forwarded-original marker, or the first run of ``>`` lines) and at a signature
    (``-- ``)."""
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        joined = line if index + 1 >= len(lines) else f"{line} {lines[index + 1]}"
        if _ATTRIBUTION.match(line.strip()) or (
                line.strip().startswith("On ") and _ATTRIBUTION.match(joined.strip())):
            break
        if line.startswith(">") or line == "-- ":
            break
        kept.append(line)
    trimmed = "\n".join(kept).strip()
    return trimmed or text.strip()


def _body_text(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        return None
    if not isinstance(content, str):
        return None
    if part.get_content_subtype() == "html":
        return html_to_text(content)
    return content


def read_mail(raw: bytes, *, me: str, allowed: tuple[str, ...],
              authserv_id: str | None) -> IncomingMail | None:
    """The mail for the agent, or None: not from an allowed sender, a forged sender,
    our own mail, an automatic message (RFC 3834: auto-replies answering each other
    forever), or nothing readable in it."""
    try:
        message = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        sender = _address(str(message.get("From", "")))
        if sender is None or sender == me or not sender_allowed(sender, allowed):
            return None
        if str(message.get("Auto-Submitted", "no")).strip().lower() != "no":
            return None
        if str(message.get("Precedence", "")).strip().lower() in ("bulk", "list", "junk"):
            return None
        if not authentication_ok(message, authserv_id):
            return None
        body = _body_text(message)
        own = _ids(str(message.get("Message-ID", "")))
        references = _ids(str(message.get("References", "")))
        in_reply_to = _ids(str(message.get("In-Reply-To", "")))
        subject = str(message.get("Subject", ""))[:300]
        files = mail_attachments(message)
    except (ValueError, TypeError, LookupError, IndexError, AttributeError):
        return None
    text = trim_quoted(body)[:MAX_TEXT_CHARS] if body is not None else ""
    if not text and not files:
        return None
    message_id = own[0] if own else None
    chain = references or in_reply_to or own
    root = chain[0] if chain else None
    return IncomingMail(sender, message_id, root, " ".join(subject.split()), text, files)


def reply_message_id(key: str, domain: str) -> str:
    """The Message-ID of one reply part (``key`` is ``<outbound_id>`` or
    ``<outbound_id>#<n>``): the same on every retry, so a resend is recognisable."""
    return f"<ironclaw-{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def write_reply(*, sender: str, to: str, text: str, message_id: str,
                thread_root: str | None, subject: str | None,
                answering: str | None = None, file: OutboundFile | None = None
                ) -> EmailMessage:
    """The reply mail. ``answering`` is the Message-ID of the mail answered: it goes in
    ``In-Reply-To`` and ends ``References`` (after the thread's root), as RFC 5322
    threads a reply; without it, both name the root. ``file`` is attached."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    base = subject or "your message"
    message["Subject"] = base if base.lower().startswith("re:") else f"Re: {base}"
    message["Message-ID"] = message_id
    message["Date"] = email.utils.formatdate(localtime=False)
    # RFC 3834: an automatic answer, so other automatic responders do not answer it.
    message["Auto-Submitted"] = "auto-replied"
    chain = [i for i in dict.fromkeys((thread_root, answering)) if i is not None]
    if chain:
        message["In-Reply-To"] = chain[-1]
        message["References"] = " ".join(chain)
    message.set_content(text)
    if file is not None:
        attach(message, file)
    return message
