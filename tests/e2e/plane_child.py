"""A control plane in its own process, for crash tests: ``python plane_child.py
STATE KEYS post N`` posts N messages and prints ``accepted i`` as each is acknowledged;
``... verify N`` restarts on the same state, waits until every reply is settled and
prints one JSON report of what the durable state says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from ironclaw.contract.queue import OutboundReader
from ironclaw.host.app import ControlPlane
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.delivery import RecordStatus, delivery_key
from ironclaw.host.modelproxy import Credentials
from ironclaw.runtime import BackoffPolicy


def config(state: Path, keys: Path) -> ControlPlaneConfig:
    return ControlPlaneConfig(
        state_dir=state, dev=True, runtime="process", key_dir=keys, safety_poll_s=0.3,
        heartbeat_interval_s=0.5, sweep_interval_s=0.3,
        sandbox_backoff=BackoffPolicy(initial=0.05, cap=0.5, max_failures=None,
                                      healthy_after=0.5))


async def post(state: Path, keys: Path, count: int) -> None:
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config(state, keys),
                                                 credentials=Credentials()).run)
        for i in range(count):
            await plane.local.post(DEMO_CONVERSATION, "operator", f"m{i}")
            print(f"accepted {i}", flush=True)
        await trio.sleep_forever()  # replies keep flowing until the parent kills us


async def verify(state: Path, keys: Path, expected: int) -> None:
    async with trio.open_nursery() as nursery:
        plane = await nursery.start(ControlPlane(config(state, keys),
                                                 credentials=Credentials()).run)
        (session,) = await plane.registry.list_sessions()
        secret = await trio.to_thread.run_sync(
            lambda: plane.sessions._deps.queues.keys(session.id))
        paths = plane.sessions._deps.queues.paths(session.id)
        report: dict[str, object] = {}
        with trio.move_on_after(90):
            while True:
                poll = await trio.to_thread.run_sync(lambda: OutboundReader(
                    paths.outbound_db, secret.outbound).poll(after_seq=0, limit=10_000))
                replies = [m for m in poll.messages if m.content.startswith("echo: m")]
                records = await plane.delivery.records.lookup(
                    [delivery_key(session.id, m.id) for m in replies])
                delivered = [m for m in replies if (r := records.get(
                    delivery_key(session.id, m.id))) and r.status is RecordStatus.DELIVERED]
                report = {"replies": sorted(m.content for m in replies),
                          "delivered": sorted(m.content for m in delivered)}
                if len(delivered) >= expected and len(delivered) == len(replies):
                    break
                await trio.sleep(0.3)
        print(json.dumps(report), flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    state, keys, mode, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    trio.run(post if mode == "post" else verify, state, keys, count)


if __name__ == "__main__":
    main()
