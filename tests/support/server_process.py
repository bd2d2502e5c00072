"""Running a real server from Debian or PyPI under a test: how every one of them is
started, waited for and stopped (ngircd, prosody, Synapse, Dovecot with OpenSMTPD).

* :func:`free_port`: a loopback port nobody listens on now.
* :func:`make_test_ca`: a test CA and a server certificate for one host, signed by it.
* :class:`ServerProcesses`: the server's processes in its own directory, each in a
  session of its own with its output in a log file there. ``wait_until`` polls a
  readiness check, failing at once (with the logs' tail) when a process exits;
  ``stop`` asks with SIGTERM, then kills. Blocking calls: a server is started once per
  test module from a synchronous fixture, or through ``trio.to_thread`` from a test.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

__all__ = ["ServerProcesses", "free_port", "make_test_ca", "port_open"]

LOG_TAIL_CHARS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts a TCP connection on loopback ``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                 timeout=1):
        return True
    return False


def make_test_ca(directory: Path, host: str, *, ca_name: str = "IronClaw test CA"
                 ) -> tuple[Path, Path, Path]:
    """``ca.pem``, ``server.pem`` and ``server.key`` in ``directory``: a CA and a
    certificate for ``host`` (an IP address or a DNS name), readable by a server that
    dropped root."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(issuer).issuer_name(issuer)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    try:
        name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        name = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    for path in paths:
        path.chmod(0o644)
    return paths


@attrs.define
class ServerProcesses:
    directory: Path
    logs: Sequence[str]  # the log files, in the directory, that ``log`` joins
    name: str  # for errors: "prosody", "the mail servers"
    running: list[subprocess.Popen[bytes]] = attrs.field(factory=list)

    def spawn(self, argv: Sequence[str], output: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the directory, its stdout and stderr appended to ``output``
        (a name in the directory)."""
        with (self.directory / output).open("ab") as sink:
            process = subprocess.Popen(list(argv), cwd=self.directory, stdout=sink,
                                       stderr=sink, start_new_session=True)
        self.running.append(process)
        return process

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = 30.0,
                   every_s: float = 0.05) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            exited = [p for p in self.running if p.poll() is not None]
            if exited:
                raise RuntimeError(f"{self.name} exited ({exited[0].returncode}):\n"
                                   f"{self.log()[-LOG_TAIL_CHARS:]}")
            if ready():
                return
            time.sleep(every_s)
        raise RuntimeError(f"{self.name} did not come up:\n{self.log()[-LOG_TAIL_CHARS:]}")

    def signal(self, number: signal.Signals) -> None:
        for process in self.running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(number)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to each, then SIGKILL to those still there after ``timeout_s``."""
        processes, self.running = self.running, []
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)  # a paused one cannot die
                    process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        return "".join((self.directory / name).read_text(errors="replace")
                       for name in self.logs if (self.directory / name).exists())
