"""Where a session's files live, on the host and inside the sandbox.

The in-sandbox paths are part of the contract: the agent is built against them. On
the host each session owns one directory under ``<state>/sessions/<session id>/``
with an inbound and an outbound subdirectory, so that the sandbox gets directory
binds (read-only for inbound) and both sides can see each other's fence files.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from .clock import is_plausible, now_us
from .ids import SessionId, validate_session_id
from .untrusted_files import read_untrusted

INBOUND_DB = "inbound.db"
OUTBOUND_DB = "outbound.db"
HEARTBEAT_FILE = "heartbeat"
# A beat is 20 bytes; anything much larger is not one.
MAX_HEARTBEAT_BYTES = 64
MODEL_SOCKET = "model.sock"
EGRESS_SOCKET = "egress.sock"
MCP_SOCKET = "mcp.sock"
WAKE_SOCKET = "wake.sock"
# A warm sandbox's agent blocks on this one until the host claims it for a session.
CLAIM_SOCKET = "claim.sock"

SANDBOX_INBOUND_DIR = Path("/queue/inbound")
SANDBOX_OUTBOUND_DIR = Path("/queue/outbound")
SANDBOX_KEY_FILE = Path("/run/ironclaw/session.key")
SANDBOX_SOCKET_DIR = Path("/run/ironclaw/sock")
SANDBOX_WORKSPACE = Path("/workspace")


class UnsafePath(ValueError):
    """A computed path escaped the directory it must stay in."""


@attrs.frozen
class QueuePaths:
    """The two queue directories, as one side sees them."""

    inbound_dir: Path
    outbound_dir: Path

    @property
    def inbound_db(self) -> Path:
        return self.inbound_dir / INBOUND_DB

    @property
    def outbound_db(self) -> Path:
        return self.outbound_dir / OUTBOUND_DB

    @property
    def heartbeat(self) -> Path:
        return self.outbound_dir / HEARTBEAT_FILE


SANDBOX_QUEUES = QueuePaths(SANDBOX_INBOUND_DIR, SANDBOX_OUTBOUND_DIR)


@attrs.frozen
class SessionLayout:
    """A session's host-side directory."""

    session_id: SessionId
    root: Path

    @classmethod
    def under(cls, state_dir: Path, session_id: str) -> SessionLayout:
        sid = validate_session_id(session_id)
        base = (state_dir / "sessions").resolve()
        root = (base / sid).resolve()
        # The id regex already forbids separators; this is the belt to its braces.
        if root.parent != base:
            raise UnsafePath(f"session directory escapes {base}")
        return cls(sid, root)

    @property
    def queues(self) -> QueuePaths:
        return QueuePaths(self.root / "inbound", self.root / "outbound")

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def create(self) -> QueuePaths:
        """Make the directories. Outbound must be writable by the sandbox's uid; the
        isolation layer chowns it, this only creates it."""
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o711, exist_ok=True)
        queues = self.queues
        queues.inbound_dir.mkdir(mode=0o755, exist_ok=True)
        queues.outbound_dir.mkdir(mode=0o755, exist_ok=True)
        self.socket_dir.mkdir(mode=0o755, exist_ok=True)
        return queues


def write_heartbeat(path: Path, at_us: int | None = None) -> None:
    """A heartbeat is a tiny file rewritten in place: cheaper than a queue commit, and
    the host sees it through the outbound directory bind."""
    data = str(at_us if at_us is not None else now_us()).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data.ljust(20), 0)
    finally:
        os.close(fd)


def read_heartbeat(path: Path) -> int | None:
    """The last beat in microseconds, or None if absent, unreadable or not a plain
    small file. The sandbox writes it, so it is read as hostile (untrusted_files.py):
    a FIFO, symlink or device there costs the reader nothing. Blocking: call it off
    the event loop."""
    try:
        raw = read_untrusted(path, max_bytes=MAX_HEARTBEAT_BYTES)
    except OSError:
        return None
    try:
        value = int(raw.strip() or b"x")
    except ValueError:
        return None
    return value if is_plausible(value) else None
