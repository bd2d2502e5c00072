"""Email files: MIME attachments in, one attachment on a reply out.

In, every part the sender marked as an attachment (``Content-Disposition: attachment``,
or a non-text part with a file name) becomes an inbound attachment over the bytes
already fetched: the whole message is bounded by ``max_message_bytes``, so nothing is
fetched from anywhere, and the inbox's caps, sniffing and naming apply as for any
channel. Out, a ``send_file`` delivery is a reply whose text is the caption, with the
file attached under its sanitised name and sniffed type.
"""

from __future__ import annotations

from email.message import EmailMessage

from ironclaw.host.attachments import InboundAttachment, OutboundFile, bytes_source

__all__ = ["MAX_FILES", "attach", "mail_attachments"]

MAX_FILES = 10


def mail_attachments(message: EmailMessage) -> tuple[InboundAttachment, ...]:
    found: list[InboundAttachment] = []
    for part in message.iter_attachments():
        if len(found) >= MAX_FILES:
            break
        try:
            data = part.get_payload(decode=True)
            name = part.get_filename() or "attachment"
        except (ValueError, LookupError, TypeError):
            continue
        if not isinstance(data, bytes) or not isinstance(name, str):
            continue
        found.append(InboundAttachment(name[:255], part.get_content_type()[:128],
                                       source=bytes_source(data)))
    return tuple(found)


def attach(message: EmailMessage, file: OutboundFile) -> None:
    maintype, _, subtype = file.media_type.partition("/")
    message.add_attachment(file.data, maintype=maintype, subtype=subtype,
                           filename=file.name)
