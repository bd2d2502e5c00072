"""REAL mail servers for tests: Debian's Dovecot (IMAP) and OpenSMTPD (SMTP), on free
loopback ports, with every mailbox under one test directory.

Not fakes: the email adapter's tests read with IMAP from Dovecot and submit to
OpenSMTPD, which delivers into the Maildirs Dovecot serves (as the ``dovecot`` system
user). Users live in a passwd file; SMTP takes mail for the test domain without a login
(OpenSMTPD 6.8 with Debian's OpenSSL 3 fails its TLS handshakes, and it offers AUTH only
over TLS). Started once per test module from a synchronous fixture.

OpenSMTPD keeps its queue at a fixed path (``/var/spool/smtpd``), so one instance runs
at a time on a machine.
"""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path

import attrs

from tests.support.server_process import ServerProcesses, free_port, port_open

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot"
                                      if Path("/usr/sbin/dovecot").exists() else None)
SMTPD = shutil.which("smtpd") or ("/usr/sbin/smtpd"
                                  if Path("/usr/sbin/smtpd").exists() else None)
DOMAIN = "test.local"


def available() -> str | None:
    """None when the servers can run here, else why not."""
    if DOVECOT is None or SMTPD is None:
        return "dovecot-imapd and opensmtpd are not installed"
    try:
        pwd.getpwnam("dovecot")
    except KeyError:
        return "the dovecot system user is missing"
    return None


_DOVECOT_CONFIG = """\
base_dir = {d}/run
state_dir = {d}/state
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{d}/mail/%n/Maildir
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
log_path = {d}/dovecot.log
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/mail/%n
}}
"""

_SMTPD_CONFIG = """\
table vusers file:{d}/vusers
listen on 127.0.0.1 port {smtp_port} hostname mail.{domain}
action "deliver" maildir "{d}/mail/%{{rcpt.user}}/Maildir" virtual <vusers>
match from any for domain "{domain}" action "deliver"
"""


@attrs.define
class MailServers:
    directory: Path
    imap_port: int
    smtp_port: int
    users: dict[str, str] = attrs.field(factory=dict)
    processes: ServerProcesses = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.processes = ServerProcesses(
            self.directory, ("dovecot.out", "dovecot.log", "smtpd.log"), "a mail server")

    def write_config(self) -> None:
        d = self.directory
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / "mail", "dovecot", "dovecot")
        (d / "dovecot.conf").write_text(_DOVECOT_CONFIG.format(d=d, imap_port=self.imap_port))
        (d / "smtpd.conf").write_text(_SMTPD_CONFIG.format(
            d=d, smtp_port=self.smtp_port, domain=DOMAIN))
        self._write_users()

    def _write_users(self) -> None:
        d = self.directory
        (d / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n"
                                         for u, p in self.users.items()))
        (d / "vusers").write_text("".join(f"{u}@{DOMAIN} dovecot\n" for u in self.users))

    def add_user(self, user: str, password: str) -> str:
        """A mailbox; the SMTP server learns it at its next (re)start."""
        self.users[user] = password
        self._write_users()
        return f"{user}@{DOMAIN}"

    def start(self) -> None:
        assert DOVECOT is not None and SMTPD is not None
        d = self.directory
        (d / "run" / "master.pid").unlink(missing_ok=True)
        self.processes.spawn([DOVECOT, "-F", "-c", str(d / "dovecot.conf")], "dovecot.out")
        self.processes.spawn([SMTPD, "-d", "-f", str(d / "smtpd.conf")], "smtpd.log")
        self.processes.wait_until(lambda: port_open(self.imap_port)
                                  and port_open(self.smtp_port), timeout_s=20)

    def stop(self) -> None:
        self.processes.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.processes.log()


def start_mail_servers(directory: Path, users: dict[str, str]) -> MailServers:
    directory.mkdir(parents=True, exist_ok=True)
    for path in (directory, *directory.parents):  # Dovecot's workers run as dovecot
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o711)
    servers = MailServers(directory, free_port(), free_port(), users=dict(users))
    servers.write_config()
    try:
        servers.start()
    except BaseException:
        servers.stop()  # the one that did start must not outlive the failure
        raise
    return servers
