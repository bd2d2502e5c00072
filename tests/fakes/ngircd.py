"""A REAL IRC server for tests: Debian's ``ngircd``, on a free loopback port.

Not a fake: the server under the IRC adapter's tests is the real thing, configured
here (no DNS or ident lookups, an operator account for server-side ``KILL``, an
optional server password, optional TLS with a test CA) and run in the foreground
(``-n``). ngircd refuses to keep root and drops to ``nobody``, so its directory and
files are made readable for that user.

    async with open_ngircd(tmp_path) as server:
        server.port, server.tls_port, server.ca_file
        await server.restart()   # same ports, every connection cut
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import trio

NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd")
                                     else None)
SERVER_NAME = "irc.test.invalid"
OPER_NAME = "oper"
OPER_PASSWORD = "oper-secret-7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IronClaw test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
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
class Ngircd:
    directory: Path
    port: int
    tls_port: int | None
    ca_file: Path | None
    password: str | None
    process: trio.Process | None = None
    nursery: trio.Nursery | None = None

    @property
    def config_file(self) -> Path:
        return self.directory / "ngircd.conf"

    def write_config(self) -> None:
        lines = [
            "[Global]", f"Name = {SERVER_NAME}", "Info = IronClaw test server",
            "AdminInfo1 = tests", "AdminInfo2 = loopback", "AdminEMail = tests@invalid",
            "Listen = 127.0.0.1", f"Ports = {self.port}", 'MotdPhrase = "test server"',
            *([f"Password = {self.password}"] if self.password else []),
            "[Limits]", "MaxConnectionsIP = 0", "MaxNickLength = 16", "PingTimeout = 120",
            "PongTimeout = 20",
            "[Options]", "DNS = no", "Ident = no", "PAM = no",
            "[Operator]", f"Name = {OPER_NAME}", f"Password = {OPER_PASSWORD}",
        ]
        if self.tls_port is not None:
            lines += ["[SSL]", f"CertFile = {self.directory / 'server.pem'}",
                      f"KeyFile = {self.directory / 'server.key'}", f"Ports = {self.tls_port}"]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.config_file.chmod(0o644)

    async def start(self) -> None:
        assert self.nursery is not None and NGIRCD is not None
        self.process = await self.nursery.start(_run_process, [
            NGIRCD, "-n", "-f", str(self.config_file)], self.directory / "ngircd.log")
        await _wait_listening(self.port)
        if self.tls_port is not None:
            await _wait_listening(self.tls_port)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(5) as slow:
            await process.wait()
        if slow.cancelled_caught:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps every connection open and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        path = self.directory / "ngircd.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def _run_process(argv: list[str], log: Path, *,
                       task_status: trio.TaskStatus[trio.Process]) -> None:
    with log.open("ab") as sink:
        process = await trio.lowlevel.open_process(argv, stdout=sink, stderr=sink)
    try:
        task_status.started(process)
        await process.wait()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def _wait_listening(port: int) -> None:
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.02)
                continue
            await stream.aclose()
            return


@contextlib.asynccontextmanager
async def open_ngircd(tmp_path: Path, *, tls: bool = False,
                      password: str | None = None) -> AsyncIterator[Ngircd]:
    if NGIRCD is None:
        raise RuntimeError("ngircd is not installed")
    directory = tmp_path / "ngircd"
    directory.mkdir(parents=True, exist_ok=True)
    for path in (directory, *directory.parents):  # ngircd runs as nobody: let it in
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o711)
    server = Ngircd(directory, free_port(), free_port() if tls else None, None, password)
    if tls:
        server.ca_file = make_test_ca(directory)[0]
    server.write_config()
    async with trio.open_nursery() as nursery:
        server.nursery = nursery
        await server.start()
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                if server.process is not None:
                    server.resume()
                await server.stop()
            nursery.cancel_scope.cancel()
