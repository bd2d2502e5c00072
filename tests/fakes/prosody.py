"""A REAL XMPP server for tests: Debian's ``prosody``, on free loopback ports.

Not a fake: the server under the XMPP adapter's tests is Prosody itself, configured
here: one virtual host (STARTTLS offered, with a certificate from a test CA, but not
required, so the test's person may log in without it); a MUC component with its
archive (so room messages carry a ``stanza-id``); an HTTP File Upload component
(XEP-0363, ``mod_http_file_share``) at ``upload.<domain>``, its HTTP server on a loopback
port; stream management (XEP-0198) with
the given hibernation time; message archiving; plain-text logins allowed on loopback;
users created with ``prosodyctl register``. Started once per test module from a
synchronous fixture (a separate process outlives each test's own Trio run).

    server = start_prosody(directory)
    server.register("alice", "secret")
    server.restart()     # same port; every connection cut, hibernating sessions gone
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import attrs

PROSODY = shutil.which("prosody")
PROSODYCTL = shutil.which("prosodyctl")
DOMAIN = "test.local"
MUC_DOMAIN = f"conference.{DOMAIN}"
UPLOAD_DOMAIN = f"upload.{DOMAIN}"

_CONFIG = """\
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
daemonize = false
run_as_root = true
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{directory}/prosody.log" }} }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "smacks", "mam",
                    "posix", "offline" }}
modules_disabled = {{ "s2s" }}
ssl = {{ certificate = "{directory}/server.pem", key = "{directory}/server.key" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
http_external_url = "http://127.0.0.1:{http_port}/"
http_default_host = "{upload_domain}"
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
archive_expires_after = "never"
default_archive_policy = true
smacks_hibernation_time = {hibernation}
limits = {{ c2s = {{ rate = "10mb/s"; burst = "10mb"; }}; }}
VirtualHost "{domain}"
Component "{muc_domain}" "muc"
  modules_enabled = {{ "muc_mam" }}
  muc_room_default_persistent = true
  muc_room_default_public = true
  restrict_room_creation = false
  muc_room_locking = false
Component "{upload_domain}" "http_file_share"
  http_file_share_size_limit = 10485760
"""


def make_certificate(directory: Path, name: str) -> None:
    """A test CA (``ca.pem``) and a certificate for DNS ``name`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IronClaw XMPP test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Prosody:
    directory: Path
    port: int
    hibernation_s: int
    http_port: int = attrs.field(factory=lambda: free_port())
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.directory / "prosody.cfg.lua"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def write_config(self) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        make_certificate(self.directory, DOMAIN)
        self.config_file.write_text(_CONFIG.format(
            directory=self.directory, port=self.port, hibernation=self.hibernation_s,
            domain=DOMAIN, muc_domain=MUC_DOMAIN, upload_domain=UPLOAD_DOMAIN,
            http_port=self.http_port))

    def start(self, timeout_s: float = 30.0) -> None:
        assert PROSODY is not None
        with (self.directory / "stdout.log").open("ab") as sink:
            self.process = subprocess.Popen(
                [PROSODY, "--config", str(self.config_file), "-F"], cwd=self.directory,
                stdout=sink, stderr=sink, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prosody exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError(f"prosody did not come up:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def register(self, user: str, password: str) -> str:
        assert PROSODYCTL is not None
        subprocess.run([PROSODYCTL, "--config", str(self.config_file), "register", user,
                        DOMAIN, password], check=True, capture_output=True,
                       cwd=self.directory)
        return f"{user}@{DOMAIN}"

    def log(self) -> str:
        out = ""
        for name in ("stdout.log", "prosody.log"):
            path = self.directory / name
            if path.exists():
                out += path.read_text(errors="replace")
        return out


def start_prosody(directory: Path, *, hibernation_s: int = 600) -> Prosody:
    directory.mkdir(parents=True, exist_ok=True)
    server = Prosody(directory, free_port(), hibernation_s)
    server.write_config()
    server.start()
    return server
