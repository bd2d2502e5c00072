"""What the chaos suite does to a control plane's sandboxes, and what it checks after.

Finding a session's sandbox processes from outside, per runtime:
- ``process``: the agent's pid file (``sessions/<id>/run/agent.pid``); the agent leads
  its own process group, so the group is signalled;
- runc and runsc: every process in the container's cgroup (``/<parent>/<ic-id>``, the
  path the spec gives), found through ``/proc/<pid>/cgroup``. Under runsc that is the
  sandbox itself: the Sentry, the gofer and the stubs that run the agent's threads.

After a run: nothing may be left behind (containers, bundles, cgroups:
:func:`leftover_runtime_state`), and every session's inbound queue must be pruned (no
``messages_in`` row left once everything is answered and the retention passed).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import attrs
import sqlcipher3

from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.isolation.oci import cgroup_parent, container_id
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.keys import FileMasterKeySource, KeyStore

__all__ = ["Sandbox", "inbound_rows_left", "leftovers", "live_sandboxes", "signal_sandbox"]


@attrs.frozen
class Sandbox:
    session_id: str
    pids: tuple[int, ...]
    group_leader: int | None = None  # process runtime: signal the whole group


def _sessions(state: Path) -> list[str]:
    root = state / "sessions"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _process_sandbox(state: Path, session_id: str) -> Sandbox | None:
    try:
        pid = int((state / "sessions" / session_id / "run" / "agent.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"sandbox_agent" not in cmdline:
        return None  # a stale pid file, reused by something else
    return Sandbox(session_id, (pid,), group_leader=pid)


def _cgroup_members(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cgroup").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def live_sandboxes(state: Path, runtime: str) -> list[Sandbox]:
    """The sandboxes of ``state``'s sessions that have processes right now."""
    found = []
    if runtime == "process":
        for session_id in _sessions(state):
            box = _process_sandbox(state, session_id)
            if box is not None:
                found.append(box)
        return found
    parent = cgroup_parent(state)
    for session_id in _sessions(state):
        pids = _cgroup_members(f"/{parent}/{container_id(session_id)}\n")
        if pids:
            found.append(Sandbox(session_id, tuple(sorted(pids))))
    return found


def signal_sandbox(box: Sandbox, signum: signal.Signals) -> int:
    """Send ``signum`` to every process of ``box``; how many were still there."""
    if box.group_leader is not None:
        try:
            os.killpg(box.group_leader, signum)
            return 1
        except ProcessLookupError:
            return 0
    sent = 0
    for pid in box.pids:
        try:
            os.kill(pid, signum)
            sent += 1
        except ProcessLookupError:
            continue
    return sent


def leftovers(state: Path) -> list[str]:
    """Containers, bundles and cgroups still there (after a clean stop: none)."""
    return [str(item) for item in leftover_runtime_state(state)]


def inbound_rows_left(state: Path) -> dict[str, int]:
    """Per session, the ``messages_in`` rows its inbound queue still holds, read with
    the session's own key (only once the control plane has stopped)."""
    keystore = KeyStore.open(state, FileMasterKeySource.in_state_dir(state))
    try:
        queues = SessionQueues(state, keystore)
        left = {}
        for session_id in _sessions(state):
            path = queues.paths(session_id).inbound_db
            if not path.exists():
                continue
            conn = sqlcipher3.connect(str(path))
            try:
                key = queues.keys(session_id).inbound.material.hex()
                conn.execute(f"PRAGMA key = \"x'{key}'\"")
                conn.execute("PRAGMA cipher_compatibility = 4")
                conn.execute("PRAGMA query_only = 1")
                (count,) = conn.execute("SELECT count(*) FROM messages_in").fetchone()
            finally:
                conn.close()
            left[session_id] = int(count)
        return left
    finally:
        keystore.close()
