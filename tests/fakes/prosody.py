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

import shutil
import subprocess
from pathlib import Path

import attrs

from tests.support.server_process import ServerProcesses, free_port, make_test_ca, port_open

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


@attrs.define
class Prosody:
    directory: Path
    port: int
    hibernation_s: int
    http_port: int = attrs.field(factory=lambda: free_port())
    processes: ServerProcesses = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.processes = ServerProcesses(self.directory, ("stdout.log", "prosody.log"),
                                         "prosody")

    @property
    def config_file(self) -> Path:
        return self.directory / "prosody.cfg.lua"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def write_config(self) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        make_test_ca(self.directory, DOMAIN, ca_name="IronClaw XMPP test CA")
        self.config_file.write_text(_CONFIG.format(
            directory=self.directory, port=self.port, hibernation=self.hibernation_s,
            domain=DOMAIN, muc_domain=MUC_DOMAIN, upload_domain=UPLOAD_DOMAIN,
            http_port=self.http_port))

    def start(self, timeout_s: float = 30.0) -> None:
        assert PROSODY is not None
        self.processes.spawn([PROSODY, "--config", str(self.config_file), "-F"],
                             "stdout.log")
        self.processes.wait_until(lambda: port_open(self.port), timeout_s)

    def stop(self) -> None:
        self.processes.stop()

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
        return self.processes.log()


def start_prosody(directory: Path, *, hibernation_s: int = 600) -> Prosody:
    directory.mkdir(parents=True, exist_ok=True)
    server = Prosody(directory, free_port(), hibernation_s)
    server.write_config()
    server.start()
    return server
