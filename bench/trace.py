"""One warm reply, hop by hop: where the milliseconds of a reply go.

``python -m bench.trace [--runtimes process,runsc] [--replies 20]`` runs the queue
suite's control plane per runtime (mock model, local channel, the demo agent), warms
it, then sends replies one at a time and stamps every hop of each: the host's hops by
wrapping the live objects' methods (this process's clock), the agent's from the rows it
commits (their timestamps, the sandbox's wall clock) and the event bus. After each reply
it waits for the trailing work (acks applied, progress reported), so that work is
attributed to its own reply; the replies are therefore not back to back. It prints a
Markdown table per runtime: the median time of each hop from the post, and from the
hop before.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ironclaw.contract.queue import OutboundReader
from ironclaw.host.app import ControlPlaneHandles
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.runtime import Envelope

from .queue import _plane_config, _reply, _run_plane, plane_availability
from .sandboxkit import clean_state

SETTLE_S = 0.6  # longer than the tail's ack delay and delivery's report delay
HOPS = [
    ("user entry durable", "the local channel's transcript row (host.db commit)"),
    ("router took it", "message.received on the bus"),
    ("inbound row committed", "the fenced inbound commit returned"),
    ("doorbell rung", "the session actor wrote the wake byte"),
    ("host saw the claim", "the tail read a processing ack (a claimed turn only)"),
    ("model call answered", "model.call on the bus"),
    ("agent began its reply commit", "the reply row's timestamp (sandbox clock)"),
    ("tail read the reply", "the outbound snapshot with the reply, read"),
    ("handed to delivery", "the tail submitted the batch"),
    ("reply in the chat", "the local channel's agent row durable: the user sees it"),
    ("delivery recorded", "delivery.delivered on the bus (after the reply)"),
    ("acks applied to inbound", "the inbound commit of the acks (after the reply)"),
    ("progress reported", "host.db cursor and inbound progress (after the reply)"),
]


class Tracer:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.wall0, self.perf0 = time.time(), time.perf_counter()

    def mark(self, hop: str, at: float | None = None) -> None:
        self.marks.setdefault(hop, time.perf_counter() if at is None else at)

    def wall(self, seconds: float) -> float:
        """A wall-clock time (s) on this process's perf_counter scale."""
        return self.perf0 + (seconds - self.wall0)


def _wrap_async(obj: Any, name: str, tracer: Tracer, *, before: str | None = None,
                after: str | None = None, when: Callable[..., bool] = lambda *a: True
                ) -> None:
    original = getattr(obj, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        traced = when(*args)
        if before and traced:
            tracer.mark(before)
        result = await original(*args, **kwargs)
        if after and traced:
            tracer.mark(after)
        return result

    setattr(obj, name, wrapper)


def _instrument(plane: ControlPlaneHandles, session_id: str, tracer: Tracer) -> None:
    local = plane.local
    _wrap_async(local, "_record", tracer, after="user entry durable",
                when=lambda conv, role, *r: role == "user")
    _wrap_async(local, "_append_reply", tracer, after="reply in the chat")
    queues = plane.sessions._deps.queues
    _wrap_async(queues, "enqueue", tracer, after="inbound row committed")
    _wrap_async(plane.delivery._progress, "handled_through", tracer,
                after="progress reported")
    actor = plane.sessions.actor(session_id)
    assert actor is not None and actor._doorbell is not None and actor._tail is not None
    doorbell, tail = actor._doorbell, actor._tail
    ring = doorbell.ring

    def traced_ring() -> None:
        tracer.mark("doorbell rung")
        ring()

    doorbell.ring = traced_ring  # type: ignore[method-assign]
    _wrap_async(tail, "_submit", tracer, before="handed to delivery")
    _wrap_async(tail, "_apply_acks", tracer, after="acks applied to inbound")
    absorb = tail._absorb

    async def traced_absorb(snapshot: Any) -> None:
        if any(a.status.value == "processing" for a in snapshot.acks):
            tracer.mark("host saw the claim")
        if snapshot.messages:
            tracer.mark("tail read the reply")
        await absorb(snapshot)

    tail._absorb = traced_absorb  # type: ignore[method-assign]


async def _bus_marks(plane: ControlPlaneHandles, tracer: Tracer, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    names = {"message.received": "router took it", "model.call": "model call answered",
             "delivery.delivered": "delivery recorded"}
    async with plane.events.subscribe(list(names)) as subscription:
        task_status.started()
        async for item in subscription:
            if isinstance(item, Envelope):
                tracer.mark(names[item.type], tracer.wall(item.timestamp))


async def trace_runtime(plane: ControlPlaneHandles, replies: int) -> list[dict[str, float]]:
    await _reply(plane, DEMO_CONVERSATION, "warm-up")
    (session,) = [s for s in await plane.registry.list_sessions()
                  if plane.sessions.actor(s.id) is not None]
    tracer = Tracer()
    _instrument(plane, session.id, tracer)
    keys = plane.sessions._deps.queues.keys(session.id)
    reader = OutboundReader(plane.sessions._deps.queues.paths(session.id).outbound_db,
                            keys.outbound)
    traces = []
    async with trio.open_nursery() as nursery:
        await nursery.start(_bus_marks, plane, tracer)
        for n in range(replies + 2):
            tracer.marks = {}
            start = time.perf_counter()
            await _reply(plane, DEMO_CONVERSATION, f"trace {n}")
            await trio.sleep(SETTLE_S)
            poll = await trio.to_thread.run_sync(lambda: reader.poll(after_seq=0, limit=4096))
            if poll.messages:
                tracer.mark("agent began its reply commit",
                            tracer.wall(poll.messages[-1].timestamp / 1e6))
            if n >= 2:  # the first two warm the instrumented path
                traces.append({hop: (at - start) * 1000 for hop, at in tracer.marks.items()})
        nursery.cancel_scope.cancel()
    return traces


def table(runtime: str, traces: list[dict[str, float]]) -> str:
    lines = [f"### {runtime} ({len(traces)} replies, medians)", "",
             "| hop | from the post | from the hop before | what |", "|---|---|---|---|"]
    previous = 0.0
    for hop, what in HOPS:
        values = [t[hop] for t in traces if hop in t]
        if not values:
            lines.append(f"| {hop} | - | - | {what} |")
            continue
        at = statistics.median(values)
        lines.append(f"| {hop} | {at:.1f} ms | {at - previous:+.1f} ms | {what} |")
        if hop != "host saw the claim":
            previous = at
    return "\n".join(lines)


async def _main(runtimes: list[str], replies: int, root: Path) -> None:
    availability = plane_availability(tuple(runtimes), root)
    for name in runtimes:
        if availability[name] is not None:
            print(f"### {name}: absent ({availability[name]})\n")
            continue
        scope, done = trio.CancelScope(), trio.Event()
        async with trio.open_nursery() as nursery:
            plane = await nursery.start(_run_plane, _plane_config(root, name), scope, done)
            print(table(name, await trace_runtime(plane, replies)) + "\n", flush=True)
            scope.cancel()
        clean_state(root / name / "state")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__)
    parser.add_argument("--runtimes", default="process,runsc")
    parser.add_argument("--replies", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ironclaw-bench-t-", dir="/var/tmp"))
    root.chmod(0o711)
    try:
        trio.run(_main, args.runtimes.split(","), args.replies, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
