"""A REAL Matrix homeserver for tests: Synapse, on SQLite, on a free loopback port.

Not a fake: the server under the Matrix adapter's real-server tests is Synapse itself
(``matrix-synapse`` from PyPI). It pins its own versions of libraries the project also
uses (``cryptography``), so it lives in a virtual environment of its own, made by
``dev.sh`` at ``.venv-synapse`` beside the project's ``.venv``
(``IRONCLAW_SYNAPSE_PYTHON`` names another interpreter that has it). The tests talk to
it only over HTTP, as a chat platform.

The server is started once per test module, from a synchronous fixture (it is a
separate process, so it outlives each test's own Trio run), with rate limits opened
up, federation off, and a registration shared secret that :meth:`Synapse.register`
uses to create users (the admin API's HMAC registration).

    server = start_synapse(directory)
    alice = server.register("alice")     # Account(user_id, token)
    server.restart()                     # same port, same database
    server.stop()
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
from pathlib import Path

import attrs
import httpx

from tests.support.server_process import ServerProcesses, free_port

SERVER_NAME = "test.local"
_REPO = Path(__file__).resolve().parents[2]


def synapse_python() -> str | None:
    """An interpreter that can run Synapse, or None (the tests then skip)."""
    candidates = [os.environ.get("IRONCLAW_SYNAPSE_PYTHON", ""),
                  str(_REPO / ".venv-synapse" / "bin" / "python"),
                  str(Path(sys.prefix).parent / ".venv-synapse" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            check = subprocess.run([candidate, "-c", "import synapse"],
                                   capture_output=True, check=False)
            if check.returncode == 0:
                return candidate
    return None


@attrs.frozen
class Account:
    user_id: str
    token: str


_CONFIG = """\
server_name: "{server_name}"
pid_file: {directory}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {directory}/homeserver.db
log_config: {directory}/log.yaml
media_store_path: {directory}/media
signing_key_path: {directory}/signing.key
registration_shared_secret: "{secret}"
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
report_stats: false
bcrypt_rounds: 4
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
url_preview_enabled: false
rc_message: {{per_second: 10000, burst_count: 10000}}
rc_registration: {{per_second: 10000, burst_count: 10000}}
rc_login:
  address: {{per_second: 10000, burst_count: 10000}}
  account: {{per_second: 10000, burst_count: 10000}}
  failed_attempts: {{per_second: 10000, burst_count: 10000}}
rc_joins:
  local: {{per_second: 10000, burst_count: 10000}}
  remote: {{per_second: 10000, burst_count: 10000}}
rc_invites:
  per_room: {{per_second: 10000, burst_count: 10000}}
  per_user: {{per_second: 10000, burst_count: 10000}}
  per_issuer: {{per_second: 10000, burst_count: 10000}}
"""

_LOG_CONFIG = """\
version: 1
formatters:
  plain: {{format: "%(asctime)s %(name)s %(levelname)s %(message)s"}}
handlers:
  file: {{class: logging.FileHandler, filename: {directory}/homeserver.log,
          formatter: plain}}
root: {{level: WARNING, handlers: [file]}}
disable_existing_loggers: false
"""


@attrs.define
class Synapse:
    directory: Path
    python: str
    port: int
    secret: str
    processes: ServerProcesses = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.processes = ServerProcesses(self.directory, ("stdout.log", "homeserver.log"),
                                         "synapse")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "homeserver.yaml"

    def write_config(self) -> None:
        self.config_file.write_text(_CONFIG.format(
            server_name=SERVER_NAME, directory=self.directory, port=self.port,
            secret=self.secret, macaroon=secrets.token_hex(16), form=secrets.token_hex(16)))
        (self.directory / "log.yaml").write_text(_LOG_CONFIG.format(directory=self.directory))
        subprocess.run([self.python, "-m", "synapse.app.homeserver", "-c",
                        str(self.config_file), "--generate-keys"],
                       cwd=self.directory, check=True, capture_output=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.processes.spawn([self.python, "-m", "synapse.app.homeserver", "-c",
                              str(self.config_file)], "stdout.log")
        self.processes.wait_until(self._healthy, timeout_s, every_s=0.1)

    def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
        return False

    def stop(self) -> None:
        self.processes.stop(timeout_s=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.processes.log()

    def register(self, localpart: str, *, admin: bool = False,
                 display_name: str | None = None) -> Account:
        """A new user through the shared-secret registration of the admin API."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = httpx.get(url, timeout=10).json()["nonce"]
        password = secrets.token_hex(12)
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        answer = httpx.post(url, timeout=30, json={
            "nonce": nonce, "username": localpart, "password": password, "admin": admin,
            "mac": mac.hexdigest(),
            **({"displayname": display_name} if display_name else {})})
        answer.raise_for_status()
        body = answer.json()
        return Account(body["user_id"], body["access_token"])


def start_synapse(directory: Path, python: str) -> Synapse:
    directory.mkdir(parents=True, exist_ok=True)
    server = Synapse(directory, python, free_port(), secrets.token_hex(16))
    server.write_config()
    server.start()
    return server
