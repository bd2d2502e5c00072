"""The whole message path, through a real control plane (mock model, process runtime).

- warm reply latency: one conversation whose agent is already running; post -> reply
  delivered to the local channel; compared with the queue floor measured in the same
  run (the two SQLCipher commits and reads, across two processes);
- cold start to first reply: a new conversation, so a new session and a new agent
  process, until its first reply;
- throughput: 1, 10 and 50 sessions, each sent messages back to back; messages per
  second until every reply is in, and a check that nothing was lost or doubled.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from ironclaw.contract.enums import EngageMode
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.devseed import DEMO_CONVERSATION
from ironclaw.host.modelproxy import Credentials, ProxyLimits
from ironclaw.host.registry import Wiring

from . import queue_floor
from .stats import summarise


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def _reply(plane: ControlPlaneHandles, conversation: str, text: str) -> float:
    local = plane.local
    mark = local.cursor(conversation)
    start = time.perf_counter()
    await local.post(conversation, "operator", text)
    with trio.fail_after(120):
        await local.wait_for_reply(conversation, after_index=mark)
    return time.perf_counter() - start


async def _conversation(plane: ControlPlaneHandles, name: str) -> str:
    group = await plane.registry.ensure_messaging_group("local", name)
    if not await plane.registry.wirings_for(group.id):
        await plane.registry.put_wiring(Wiring(
            id=f"bench-{name}", messaging_group_id=group.id, agent_group_id="demo",
            engage_mode=EngageMode.PATTERN, pattern="."))
    return name


async def _throughput(plane: ControlPlaneHandles, sessions: int, per_session: int
                      ) -> dict[str, Any]:
    names = [await _conversation(plane, f"tp{sessions}-{i}") for i in range(sessions)]
    async with trio.open_nursery() as nursery:  # warm every session first
        for name in names:
            nursery.start_soon(_reply, plane, name, "warm")
    local = plane.local
    marks = {name: local.cursor(name) for name in names}
    start = time.perf_counter()

    async def drive(name: str) -> None:
        for i in range(per_session):
            await local.post(name, "operator", f"m{i}")
        with trio.fail_after(300):
            index = marks[name]
            while sum(1 for e in local.transcript(name)
                      if e.role == "agent" and e.index > marks[name]) < per_session:
                index = (await local.wait_for_reply(name, after_index=index)).index

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(drive, name)
    elapsed = time.perf_counter() - start
    await trio.sleep(0.5)  # a duplicate would land here
    lost = doubled = 0
    for name in names:
        replies = [e.text for e in local.transcript(name)
                   if e.role == "agent" and e.index > marks[name]]
        expected = {f"echo: m{i}" for i in range(per_session)}
        lost += len(expected - set(replies))
        doubled += len(replies) - len(set(replies))
    return {"sessions": sessions, "messages": sessions * per_session,
            "seconds": elapsed, "messages_per_s": sessions * per_session / elapsed,
            "lost": lost, "duplicated": doubled}


async def _run(iterations: int, session_counts: tuple[int, ...], per_session: int
               ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The model proxy's per-session rate cap (5 calls/s by default) exists to guard a
        # provider budget; here it would measure the cap, not the path, so it is lifted.
        config = ControlPlaneConfig(state_dir=root / "state", dev=True, runtime="process",
                                    key_dir=root / "k", idle_timeout_s=3600,
                                    model_limits=ProxyLimits(rate=10_000.0, burst=10_000))
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(ControlPlane(config, credentials=Credentials()).run)
            _progress("warm reply latency")
            await _reply(plane, DEMO_CONVERSATION, "warm-up")
            warm = [await _reply(plane, DEMO_CONVERSATION, f"w{i}")
                    for i in range(iterations)]
            _progress("cold start to first reply")
            cold = [await _reply(plane, await _conversation(plane, f"cold-{i}"), "first")
                    for i in range(5)]
            throughput = []
            for count in session_counts:
                _progress(f"throughput with {count} session(s)")
                throughput.append(await _throughput(plane, count, per_session))
            nursery.cancel_scope.cancel()
    return {"warm": warm, "cold": cold, "throughput": throughput}


def run(iterations: int = 200, session_counts: tuple[int, ...] = (1, 10, 50),
        per_session: int = 20) -> dict[str, Any]:
    logging.getLogger("ironclaw").setLevel(logging.ERROR)
    _progress("queue floor (same run)")
    floor = queue_floor.run(iterations=iterations, warmup=max(5, iterations // 10))
    measured = trio.run(_run, iterations, session_counts, per_session)
    warm = summarise(measured["warm"])
    floor_rt = floor["results"]["roundtrip_cross_process"]
    return {
        "iterations": iterations,
        "results": {"reply_warm": warm, "cold_start_first_reply": summarise(measured["cold"]),
                    "queue_floor_cross_process": floor_rt},
        "throughput": measured["throughput"],
        "ratios": {"warm_p50_over_floor_p50": warm["median_ms"] / floor_rt["median_ms"],
                   "warm_p99_over_floor_p99": warm["p99_ms"] / floor_rt["p99_ms"]},
    }
