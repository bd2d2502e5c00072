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
import functools
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import trio

from tests.support.server_process import ServerProcesses, free_port, make_test_ca, port_open

NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd")
                                     else None)
SERVER_NAME = "irc.test.invalid"
OPER_NAME = "oper"
OPER_PASSWORD = "oper-secret-7"


@attrs.define
class Ngircd:
    directory: Path
    port: int
    tls_port: int | None
    ca_file: Path | None
    password: str | None
    processes: ServerProcesses = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.processes = ServerProcesses(self.directory, ("ngircd.log",), "ngircd")

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
        await trio.to_thread.run_sync(self._start)

    def _start(self) -> None:
        assert NGIRCD is not None
        self.processes.spawn([NGIRCD, "-n", "-f", str(self.config_file)], "ngircd.log")
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])
        self.processes.wait_until(lambda: all(port_open(port) for port in ports),
                                  timeout_s=10, every_s=0.02)

    async def stop(self) -> None:
        await trio.to_thread.run_sync(functools.partial(self.processes.stop, timeout_s=5))

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps every connection open and answers nothing."""
        self.processes.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.processes.signal(signal.SIGCONT)

    def log(self) -> str:
        return self.processes.log()


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
        server.ca_file = make_test_ca(directory, "127.0.0.1")[0]
    server.write_config()
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()
