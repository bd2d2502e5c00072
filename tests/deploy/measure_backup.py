"""Backup and restore time and size for N sessions (the figures in docs/deploy.md):
``python -m tests.deploy.measure_backup [N]`` (default 100). A dev control plane with
the process runtime gets N local conversations, each wired to the demo agent and
answered once; then the plane is backed up while it runs, and the archive restored
into a fresh directory. Prints one JSON object."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from ironclaw.cli.backup import restore, write_backup
from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import MessagingGroup, Wiring


async def _fill_and_back_up(config: ControlPlaneConfig, count: int, archive: Path
                            ) -> dict[str, object]:
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
        for i in range(count):
            group = await plane.registry.ensure_messaging_group("local", f"c{i}")
            await plane.registry.put_messaging_group(MessagingGroup(
                id=group.id, channel=group.channel, platform_id=group.platform_id,
                instance=group.instance, unknown_sender_policy=UnknownSenderPolicy.PUBLIC,
                name=f"c{i}", created_at=group.created_at))
            await plane.registry.put_wiring(Wiring(
                id=f"w{i}", messaging_group_id=group.id, agent_group_id=DEMO_GROUP,
                engage_mode=EngageMode.PATTERN, pattern="."))
        for i in range(count):
            await plane.local.post(f"c{i}", "alice", f"hello {i}")
        with trio.fail_after(600):
            for i in range(count):
                await plane.local.wait_for_reply(f"c{i}", after_index=0)
        sessions = len(await plane.registry.list_sessions())
        report = await trio.to_thread.run_sync(lambda: write_backup(
            config.state_dir, archive, config_file=None, include_master_key=False))
        for session_id in plane.sessions.live_ids():
            await plane.sessions.mailbox.send(StopSession(session_id, "measured"))
        with trio.move_on_after(120):
            for session_id in plane.sessions.live_ids():
                await plane.sessions.wait_retired(session_id)
        nursery.cancel_scope.cancel()
    return {"sessions": sessions, "backup_seconds": report["seconds"],
            "backup_bytes": report["bytes"]}


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        base = Path(scratch)
        config = ControlPlaneConfig(state_dir=base / "state", dev=True, runtime="process",
                                    key_dir=base / "keys", idle_timeout_s=3600)
        figures = trio.run(_fill_and_back_up, config, count, base / "backup.tar.gz")
        started = time.monotonic()
        restored = restore(base / "backup.tar.gz", base / "restored",
                           master_key=config.state_dir / "keys" / "master.key",
                           config_to=None)
        figures["restore_seconds"] = round(time.monotonic() - started, 3)
        figures["restore_audit_ok"] = restored["audit_ok"]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
