"""The mail servers, through the standard library's IMAP and SMTP clients, each call run
on a worker thread (``trio.to_thread``) so the event loop never waits on a socket.

Every socket has a timeout, so a worker thread never blocks for long. IDLE (RFC 2177)
waits in slices of :data:`IDLE_SLICE_S` and checks a stop flag between them, so a
cancelled wait ends within one slice.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import select
import smtplib
import ssl
import threading
from email.message import EmailMessage

import attrs

from ironclaw.host.channels.base import ChannelError

from .config import EmailConfig

__all__ = ["Imap", "MailLost", "Mailbox", "send_mail"]

IDLE_SLICE_S = 1.0
SOCKET_TIMEOUT_S = 60.0
MAX_IDLE_LINE = 8192


class MailLost(ChannelError):
    """The mail server connection failed or refused us; the text is safe to log.
    ``permanent``: the server refused for good (a 5xx answer to a submission)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@attrs.frozen
class Mailbox:
    validity: int  # UIDVALIDITY: UIDs are only comparable under the same value
    next_uid: int  # UIDNEXT


def _context(config: EmailConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if config.tls_ca_file:
        context.load_verify_locations(cafile=config.tls_ca_file)
    return context


class Imap:
    """One IMAP connection; every method blocks and belongs on a worker thread."""

    def __init__(self, config: EmailConfig) -> None:
        self._config = config
        self._conn: imaplib.IMAP4 | None = None
        self.idle_supported = False
        self._news = False

    def open(self) -> Mailbox:
        config = self._config
        try:
            if config.imap_tls == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    config.imap_server, config.imap_port, ssl_context=_context(config),
                    timeout=SOCKET_TIMEOUT_S)
            else:
                conn = imaplib.IMAP4(config.imap_server, config.imap_port,
                                     timeout=SOCKET_TIMEOUT_S)
                if config.imap_tls == "starttls":
                    conn.starttls(ssl_context=_context(config))
            self._conn = conn
            conn.login(config.username, config.password.reveal())
            status, _ = conn.select("INBOX", readonly=True)
            if status != "OK":
                raise MailLost("IMAP: the INBOX cannot be opened")
            validity = _number(conn.response("UIDVALIDITY")[1])
            self.idle_supported = "IDLE" in conn.capabilities
            status, data = conn.status("INBOX", "(UIDNEXT)")
            match = re.search(rb"UIDNEXT (\d+)", data[0] or b"") if status == "OK" else None
            return Mailbox(validity, int(match.group(1)) if match else 1)
        except imaplib.IMAP4.error:
            raise MailLost("IMAP: the server refused our login or command") from None
        except (OSError, ssl.SSLError) as exc:
            raise MailLost(f"IMAP: connection failed ({type(exc).__name__})") from None

    def _require(self) -> imaplib.IMAP4:
        if self._conn is None:
            raise MailLost("IMAP: not connected")
        return self._conn

    def new_uids(self, after: int, limit: int) -> list[int]:
        conn = self._require()
        try:
            conn.noop()  # let the server tell us what arrived
            conn.untagged_responses.pop("EXISTS", None)
            conn.untagged_responses.pop("RECENT", None)
            status, data = conn.uid("SEARCH", f"UID {after + 1}:*")
            # Mail that arrived while the search ran is announced with its answer, and
            # IDLE would not announce it again: look once more before waiting.
            self._news = bool(conn.untagged_responses.pop("EXISTS", None))
        except imaplib.IMAP4.error:
            raise MailLost("IMAP: SEARCH failed") from None
        except OSError as exc:
            raise MailLost(f"IMAP: connection failed ({type(exc).__name__})") from None
        if status != "OK":
            raise MailLost("IMAP: SEARCH refused")
        uids = sorted(int(u) for u in (data[0] or b"").split() if u.isdigit())
        return [uid for uid in uids if uid > after][:limit]  # "n:*" may give the last one

    def size(self, uid: int) -> int | None:
        status, data = self._fetch(uid, "(RFC822.SIZE)")
        text = b" ".join(d if isinstance(d, bytes) else d[0] for d in data
                         if isinstance(d, bytes) or (isinstance(d, tuple) and d))
        match = re.search(rb"RFC822\.SIZE (\d+)", text) if status == "OK" else None
        return int(match.group(1)) if match else None

    def fetch(self, uid: int) -> bytes | None:
        status, data = self._fetch(uid, "(BODY.PEEK[])")
        for item in data if status == "OK" else []:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        return None

    def _fetch(self, uid: int, what: str) -> tuple[str, list[object]]:
        conn = self._require()
        try:
            status, data = conn.uid("FETCH", str(uid), what)
        except imaplib.IMAP4.error:
            raise MailLost("IMAP: FETCH failed") from None
        except OSError as exc:
            raise MailLost(f"IMAP: connection failed ({type(exc).__name__})") from None
        return status, list(data)

    def idle(self, seconds: float, stop: threading.Event) -> None:
        """Wait until the server reports new mail, ``seconds`` pass, or ``stop`` is set.
        Without IDLE, just wait (the caller then polls)."""
        conn = self._require()
        if self._news:
            self._news = False
            return
        if not self.idle_supported:
            stop.wait(seconds)
            return
        try:
            conn.send(b"IC1 IDLE\r\n")
            if not conn.readline().startswith(b"+"):
                raise MailLost("IMAP: IDLE refused")
            sock = conn.socket()
            waited = 0.0
            while waited < seconds and not stop.is_set():
                # select, not a socket timeout: a timed-out read leaves the client's
                # buffered reader unusable. After "+ idling" the server sends nothing
                # until there is news, so nothing waits in that buffer.
                readable, _, _ = select.select([sock], [], [], IDLE_SLICE_S)
                if not readable:
                    waited += IDLE_SLICE_S
                    continue
                line = conn.readline()
                if not line:
                    raise MailLost("IMAP: the server closed the connection")
                if re.match(rb"\* \d+ (EXISTS|RECENT)", line[:MAX_IDLE_LINE]):
                    break
            conn.send(b"DONE\r\n")
            while True:
                line = conn.readline()
                if not line:
                    raise MailLost("IMAP: the server closed the connection")
                if line.startswith(b"IC1 "):
                    return
        except OSError as exc:
            raise MailLost(f"IMAP: connection failed ({type(exc).__name__})") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                conn.shutdown()


def send_mail(config: EmailConfig, message: EmailMessage) -> None:
    """Submit one message (blocking: run it on a worker thread)."""
    try:
        if config.smtp_tls == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.smtp_server, config.smtp_port, context=_context(config),
                timeout=SOCKET_TIMEOUT_S)
        else:
            smtp = smtplib.SMTP(config.smtp_server, config.smtp_port,
                                timeout=SOCKET_TIMEOUT_S)
        with smtp:
            if config.smtp_tls == "starttls":
                smtp.starttls(context=_context(config))
            if config.smtp_login:
                smtp.login(config.username, config.password.reveal())
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError:
        raise MailLost("SMTP: the server refused our credentials", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        raise MailLost(f"SMTP: refused ({exc.smtp_code})",
                       permanent=500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPRecipientsRefused:
        raise MailLost("SMTP: the recipient was refused", permanent=True) from None
    except smtplib.SMTPException as exc:
        raise MailLost(f"SMTP: failed ({type(exc).__name__})") from None
    except (OSError, ssl.SSLError) as exc:
        raise MailLost(f"SMTP: connection failed ({type(exc).__name__})") from None


def _number(values: list[bytes | None] | None) -> int:
    for value in values or []:
        if value and value.strip().isdigit():
            return int(value)
    return 0
