"""``queue``: the message path, end to end, against its floor and the anchor's design.

One run holds, in one Trio program:
- a real control plane per runtime (``process`` always; ``runsc``, ``runc``, ``crun``
  when this build can launch them: an OCI isolator and a sealed image), each with the
  mock model, a demo agent and the local channel;
- the floor: a queue pair whose "sandbox" half is a second process woken over a pipe,
  doing one round trip to a real model proxy (mock model) per turn, and no agent logic
  (also measured without the proxy hop: the queue commits and reads alone);
- a replay of the anchor's design: the same queues, where the sandbox side and the
  host side each look only every 2 s (two unsynchronised pollers, real SQLCipher reads
  and commits), with messages sent at random moments.

Measured:
- warm reply latency (post to the reply delivered to the local channel), interleaved
  round-robin with the floor and across runtimes: p50 and p99 each;
- cold start to first reply (a new conversation: a new session and sandbox). OCI
  planes keep a warm pool (one warm sandbox for the demo agent's group), as the daemon
  does; each sample waits, untimed, until a warm sandbox is ready, so the row is a
  claim, the latency of a conversation that starts while the pool keeps up;
- throughput with 1, 10, 50 and 100 sessions (every session warm, then each sent
  messages back to back): messages per second, and nothing lost or doubled.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import sqlcipher3
import trio

from ironclaw.contract.cipher import SessionKeys
from ironclaw.contract.enums import EngageMode
from ironclaw.contract.ids import new_session_id
from ironclaw.contract.queue import OutboundReader
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.channels.base import ChannelUnavailable
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_CONVERSATION
from ironclaw.host.isolation.pool import PoolSettings
from ironclaw.host.modelproxy import (
    Credentials,
    ModelProxy,
    ProviderEndpoint,
    ProxyLimits,
    SessionRoute,
)
from ironclaw.host.registry import Wiring

from . import charts
from .context import RUNTIMES
from .progress import Progress
from .queue_floor import CrossProcessFloor, HostSide, SandboxEcho, make_queues, open_cost
from .report import SuiteResult, Table, cell
from .sandboxkit import clean_state, image_cache_dir
from .stats import absent, failed, interleave, interleave_async, ratio, summarise

__all__ = ["ANCHOR", "FLOOR", "FLOOR_QUEUE", "run"]

FLOOR = "floor"
FLOOR_QUEUE = "floor (queue only)"
ANCHOR = "anchor replay (2 s poll)"
ANCHOR_INTERVAL_S = 2.0
LIFTED = ProxyLimits(rate=100_000.0, burst=100_000)


@attrs.frozen
class Params:
    warm: int
    warmup: int
    cold: int
    sessions: tuple[int, ...]
    per_session: int
    anchor_sessions: int
    anchor_messages: int
    step_timeout_s: float


MODES = {
    "full": Params(warm=200, warmup=20, cold=5, sessions=(1, 10, 50, 100), per_session=20,
                   anchor_sessions=10, anchor_messages=4, step_timeout_s=300),
    "quick": Params(warm=30, warmup=5, cold=2, sessions=(1, 3), per_session=5,
                    anchor_sessions=3, anchor_messages=2, step_timeout_s=120),
    "smoke": Params(warm=5, warmup=2, cold=1, sessions=(1, 2), per_session=2,
                    anchor_sessions=1, anchor_messages=2, step_timeout_s=60),
}


# -- the control planes ----------------------------------------------------------------

async def _reply(plane: ControlPlaneHandles, conversation: str, text: str,
                 limit_s: float = 120) -> float:
    local = plane.local
    mark = local.cursor(conversation)
    start = time.perf_counter()
    await local.post(conversation, "operator", text)
    with trio.fail_after(limit_s):
        await local.wait_for_reply(conversation, after_index=mark)
    return time.perf_counter() - start


async def _conversation(plane: ControlPlaneHandles, name: str) -> str:
    group = await plane.registry.ensure_messaging_group("local", name)
    if not await plane.registry.wirings_for(group.id):
        await plane.registry.put_wiring(Wiring(
            id=f"bench-{name}", messaging_group_id=group.id, agent_group_id="demo",
            engage_mode=EngageMode.PATTERN, pattern="."))
    return name


def _mem_available_mib() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("inf")


async def _throughput(plane: ControlPlaneHandles, sessions: int, per_session: int,
                      limit_s: float) -> dict[str, Any]:
    # The same conversation names at every step: a step with 50 sessions reuses the 10
    # of the step before, so at most max(sessions) agents are ever alive.
    names = [await _conversation(plane, f"tp-{i}") for i in range(sessions)]
    with trio.fail_after(limit_s):
        async with trio.open_nursery() as nursery:  # every session warm first
            for name in names:
                nursery.start_soon(_reply, plane, name, "warm", limit_s)
    local = plane.local
    marks = {name: local.cursor(name) for name in names}
    tag = f"s{sessions}-"
    start = time.perf_counter()

    async def drive(name: str) -> None:
        for i in range(per_session):
            await local.post(name, "operator", f"{tag}m{i}")
        index = marks[name]
        while sum(1 for e in local.transcript(name)
                  if e.role == "agent" and e.index > marks[name]) < per_session:
            index = (await local.wait_for_reply(name, after_index=index)).index

    with trio.fail_after(limit_s):
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(drive, name)
    elapsed = time.perf_counter() - start
    await trio.sleep(0.5)  # a duplicate would land here
    lost = doubled = 0
    for name in names:
        replies = [e.text for e in local.transcript(name)
                   if e.role == "agent" and e.index > marks[name]]
        expected = {f"echo: {tag}m{i}" for i in range(per_session)}
        lost += len(expected - set(replies))
        doubled += len(replies) - len(set(replies))
    return {"status": "ok", "sessions": sessions, "messages": sessions * per_session,
            "seconds": elapsed, "messages_per_s": sessions * per_session / elapsed,
            "lost": lost, "duplicated": doubled}


def plane_availability(runtimes: tuple[str, ...], scratch: Path) -> dict[str, str | None]:
    """Per runtime: None if a control plane can run it here, else why it is absent."""
    from ironclaw.host.app import make_isolator

    out: dict[str, str | None] = {}
    for name in runtimes:
        if name != "process" and shutil.which(name) is None:
            out[name] = f"{name} not found on PATH"
            continue
        if name != "process" and os.geteuid() != 0:
            out[name] = "OCI runtimes need root on this host (rootless not configured)"
            continue
        try:
            make_isolator(ControlPlaneConfig(state_dir=scratch / f"probe-{name}", dev=True,
                                             runtime=name, key_dir=scratch / "probe-keys",
                                             image_cache_dir=image_cache_dir()))
        except Exception as exc:
            out[name] = (f"no sandbox image or isolator for {name} in this build "
                         f"({type(exc).__name__}: {exc})")
        else:
            out[name] = None
    return out


# -- the anchor replay -----------------------------------------------------------------

async def anchor_replay(root: Path, sessions: int, messages: int,
                        interval: float = ANCHOR_INTERVAL_S,
                        on_sample: Any = None) -> list[float]:
    """Reply latency when each side looks only every ``interval`` seconds.

    Per simulated session: a real queue pair; a sandbox poller and a host poller, each
    on its own ``interval`` clock with a random phase (the anchor's loops are not
    synchronised); messages sent one at a time at random moments. Latency is from the
    send to the host poller seeing the reply, measured, not computed."""
    samples: list[float] = []
    rng = random.Random(7)

    async def one(index: int) -> None:
        queues = make_queues(root / f"anchor-{index}")
        keys = SessionKeys.generate()
        host, echo = HostSide(queues, keys), SandboxEcho(queues, keys)
        pending: dict[str, tuple[float, trio.Event]] = {}

        def replies() -> list[str]:
            if host.reader is None:
                host.reader = OutboundReader(queues.outbound_db, keys.outbound)
            poll = host.reader.poll(after_seq=host.cursor)
            host.cursor = poll.cursor
            return [m.in_reply_to for m in poll.messages if m.in_reply_to]

        async def ticker(phase: float, work: Any) -> None:
            next_at = trio.current_time() + phase
            while True:
                await trio.sleep_until(next_at)
                await work()
                next_at += interval

        async def sandbox_poll() -> None:
            await trio.to_thread.run_sync(echo.answer_pending)

        async def host_poll() -> None:
            seen = await trio.to_thread.run_sync(replies)
            now = time.perf_counter()
            for mid in seen:
                if mid in pending:
                    sent, event = pending.pop(mid)
                    samples.append(now - sent)
                    event.set()
                    if on_sample is not None:
                        on_sample()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker, rng.uniform(0, interval), sandbox_poll)
            nursery.start_soon(ticker, rng.uniform(0, interval), host_poll)
            for m in range(messages):
                await trio.sleep(rng.uniform(0, interval))
                event = trio.Event()
                sent = time.perf_counter()
                mid = await trio.to_thread.run_sync(host.send, f"anchor {index}/{m}")
                pending[mid] = (sent, event)
                with trio.fail_after(10 * interval + 30):
                    await event.wait()
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for index in range(sessions):
            nursery.start_soon(one, index)
    return samples


# -- the run ---------------------------------------------------------------------------

def run(*, mode: str = "quick", progress: Progress, runtimes: tuple[str, ...] | None = None,
        iterations: int | None = None, floor_only: bool = False,
        sessions: tuple[int, ...] | None = None) -> SuiteResult:
    p = MODES[mode]
    if iterations is not None:
        p = attrs.evolve(p, warm=iterations, warmup=max(2, iterations // 10))
    if sessions is not None:
        p = attrs.evolve(p, sessions=sessions)
    if floor_only:
        return _floor_only(p, mode, progress)
    root = Path(tempfile.mkdtemp(prefix="ironclaw-bench-q-", dir="/var/tmp"))
    root.chmod(0o711)
    names = ("process", *(runtimes if runtimes is not None else RUNTIMES))
    try:
        availability = plane_availability(names, root)
        measured = trio.run(_run, p, progress, root, availability)
    finally:
        for name in names:
            clean_state(root / name / "state")
        shutil.rmtree(root, ignore_errors=True)
    return _assemble(p, mode, measured, availability)


async def _run(p: Params, progress: Progress, root: Path,
               availability: dict[str, str | None]) -> dict[str, Any]:
    usable = [name for name, why in availability.items() if why is None]
    out: dict[str, Any] = {"throughput": {n: [] for n in usable}}
    async with trio.open_nursery() as nursery:
        proxy = ModelProxy(limits=LIFTED)
        await nursery.start(proxy.run)
        sid = new_session_id()
        sock_dir = Path(tempfile.mkdtemp(prefix="icbq-", dir="/tmp"))  # short UDS path
        try:
            socket_path = await proxy.serve_session(SessionRoute(
                sid, "bench", ProviderEndpoint.mock(), sock_dir / sid / "model.sock"))
            floor = await trio.to_thread.run_sync(CrossProcessFloor, root / "floor",
                                                  socket_path)
            try:
                await _measure(p, progress, root, usable, floor, out)
            finally:
                await trio.to_thread.run_sync(floor.close)
        finally:
            shutil.rmtree(sock_dir, ignore_errors=True)
        nursery.cancel_scope.cancel()
    return out


def _plane_config(root: Path, name: str) -> ControlPlaneConfig:
    return ControlPlaneConfig(
        state_dir=root / name / "state", dev=True, runtime=name,
        key_dir=root / name / "keys", idle_timeout_s=3600,
        # The per-session model rate cap guards a provider budget; here it would
        # measure the cap, not the path.
        model_limits=LIFTED,
        # OCI runtimes mount the image from inside the sandbox's user namespace: the
        # bench's image cache is reachable (o+x all the way), root's home is not.
        image_cache_dir=image_cache_dir(),
        sandbox_pool=PoolSettings(max_total=1, max_per_group=1, prewarm_groups=("demo",),
                                  memory_floor_bytes=MEM_RESERVE_MIB << 20))


async def _run_plane(config: ControlPlaneConfig, scope: trio.CancelScope, done: trio.Event,
                     *, task_status: trio.TaskStatus[ControlPlaneHandles]) -> None:
    try:
        with scope:
            await ControlPlane(config, credentials=Credentials()).run(task_status=task_status)
    finally:
        done.set()


# A sandbox of any runtime here stays under this much (runsc: about 80 MiB PSS idle).
MIB_PER_SESSION = 150
MEM_RESERVE_MIB = 3072


async def _measure(p: Params, progress: Progress, root: Path, usable: list[str],
                   floor: CrossProcessFloor, out: dict[str, Any]) -> None:
    planes: dict[str, ControlPlaneHandles] = {}
    stops: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
    async with trio.open_nursery() as nursery:
        with progress.phase(f"starting control planes ({', '.join(usable)})"):
            for name in usable:
                scope, done = trio.CancelScope(), trio.Event()
                planes[name] = await nursery.start(_run_plane, _plane_config(root, name),
                                                   scope, done)
                stops[name] = (scope, done)
                await _reply(planes[name], DEMO_CONVERSATION, "warm-up")

        cases: dict[str, Any] = {
            FLOOR_QUEUE: lambda: trio.to_thread.run_sync(floor.roundtrip),
            FLOOR: lambda: trio.to_thread.run_sync(lambda: floor.roundtrip(via_proxy=True)),
        }
        counter = iter(range(10**9))
        for name, plane in planes.items():
            cases[name] = (lambda plane=plane: _reply(plane, DEMO_CONVERSATION,
                                                      f"w{next(counter)}"))
        with progress.phase("warm reply latency, interleaved with the floor",
                            total=(p.warm + p.warmup) * len(cases)) as ph:
            out["warm"] = await interleave_async(cases, iterations=p.warm, warmup=p.warmup,
                                                 on_sample=lambda _n: ph.advance())

        cold_counter = iter(range(10**9))

        def cold(plane: ControlPlaneHandles) -> Callable[[], Awaitable[float]]:
            async def case() -> float:
                name = await _conversation(plane, f"cold-{next(cold_counter)}")
                if plane.pool is not None:
                    with trio.fail_after(120):
                        await plane.pool.wait_warm("demo")
                return await _reply(plane, name, "first")
            return case

        with progress.phase("cold start to first reply", total=p.cold * len(planes)) as ph:
            out["cold"] = await interleave_async(
                {n: cold(plane) for n, plane in planes.items()},
                iterations=p.cold, on_sample=lambda _n: ph.advance())

        # Throughput, one runtime at a time; each plane is stopped (and with it all of
        # its sandboxes) once its steps are done, so at most one runtime's largest
        # step is alive at once.
        for name in list(planes):
            for count in p.sessions:
                with progress.phase(f"throughput, {count} session(s), {name}"):
                    need = count * MIB_PER_SESSION + MEM_RESERVE_MIB
                    if _mem_available_mib() < need:
                        out["throughput"][name].append(
                            {"status": "skipped", "sessions": count,
                             "reason": f"about {need} MiB needed, "
                                       f"{_mem_available_mib():.0f} MiB available"})
                        continue
                    try:
                        step = await _throughput(planes[name], count, p.per_session,
                                                 p.step_timeout_s)
                    except trio.TooSlowError:
                        step = {"status": "failed", "sessions": count,
                                "reason": f"did not finish within {p.step_timeout_s:.0f} s"}
                    except ExceptionGroup as group:
                        refused, rest = group.split(ChannelUnavailable)
                        if refused is None or rest is not None:
                            raise
                        step = {"status": "failed", "sessions": count,
                                "reason": f"{len(refused.exceptions)} message(s) not "
                                          "accepted: the router did not take them in time"}
                    out["throughput"][name].append(step)
            with progress.phase(f"stopping the {name} control plane"):
                scope, done = stops[name]
                scope.cancel()
                with trio.move_on_after(120):
                    await done.wait()
        nursery.cancel_scope.cancel()

    total = p.anchor_sessions * p.anchor_messages
    with progress.phase(f"anchor replay: 2 s polls on both sides ({total} messages)",
                        total=total) as ph:
        out["anchor"] = await anchor_replay(root / "anchor", p.anchor_sessions,
                                            p.anchor_messages, on_sample=ph.advance)


def _floor_only(p: Params, mode: str, progress: Progress) -> SuiteResult:
    """The old ``queue-floor`` suite, in the new framework: the queue round trip in
    one process and across two, and the raw-key versus passphrase open cost."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = SessionKeys.generate()
        local = make_queues(root / "local")
        host, echo = HostSide(local, keys), SandboxEcho(local, keys)
        remote = CrossProcessFloor(root / "remote")
        raw_db, pass_db = root / "raw.db", root / "pass.db"
        passphrase = "PRAGMA key = 'correct horse battery staple'"
        for db, pragma in ((raw_db, keys.inbound.pragma()), (pass_db, passphrase)):
            conn = sqlcipher3.connect(str(db))
            conn.execute(pragma)
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
            conn.close()
        rounds = iter(range(10**9))

        def local_rt() -> float:
            start = time.perf_counter()
            mid = host.send("ping")
            echo.answer_pending()
            if not host.reply_to(mid):
                raise RuntimeError("no reply")
            return time.perf_counter() - start

        def passphrase_open() -> float | None:
            # ~100 ms each (PBKDF2, 256,000 iterations): sampled every tenth round.
            return open_cost(pass_db, passphrase) if next(rounds) % 10 == 0 else None

        cases = {"roundtrip_in_process": local_rt, "roundtrip_cross_process": remote.roundtrip,
                 "open_raw_key": lambda: open_cost(raw_db, keys.inbound.pragma()),
                 "open_passphrase": passphrase_open}
        try:
            with progress.phase("queue floor", total=(p.warm + p.warmup) * len(cases)) as ph:
                samples = interleave(cases, iterations=p.warm, warmup=p.warmup,
                                     on_sample=lambda _n: ph.advance())
        finally:
            remote.close()
    results = {"floor": {name: (summarise([s for s in samples[name] if s is not None])
                                if name not in samples.failures else
                                failed(samples.failures[name])) for name in cases}}
    f = results["floor"]
    ratios = {"cross_over_in_process": ratio(f["roundtrip_cross_process"],
                                             f["roundtrip_in_process"]),
              "passphrase_over_raw_key": ratio(f["open_passphrase"], f["open_raw_key"])}
    rows = [[name, cell(s), cell(s, "p90"), cell(s, "p99"), str(s.get("n", 0))]
            for name, s in f.items()]
    method = {"iterations": f"{p.warm} (+{p.warmup} discarded); passphrase opens every "
                            "tenth round", "interleaving": "round-robin, rotated each round"}
    result = SuiteResult("queue-floor", mode, method, results, ratios,
                         [Table("Queue floor", ["measure", "median", "p90", "p99", "n"], rows)])
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


def _assemble(p: Params, mode: str, measured: dict[str, Any],
              availability: dict[str, str | None]) -> SuiteResult:
    names = list(availability)
    warm = measured["warm"]
    reply: dict[str, dict[str, Any]] = {}
    for variant in (FLOOR_QUEUE, FLOOR, *names):
        if variant in availability and availability[variant] is not None:
            reply[variant] = absent(str(availability[variant]))
        elif variant in warm.failures:
            reply[variant] = failed(warm.failures[variant])
        else:
            reply[variant] = summarise(warm.get(variant, []))
    reply[ANCHOR] = summarise(measured["anchor"]) if measured["anchor"] else failed(
        "no samples")
    cold = measured["cold"]
    cold_results = {n: (absent(str(availability[n])) if availability[n] is not None else
                        failed(cold.failures[n]) if n in cold.failures else
                        summarise(cold.get(n, []))) for n in names}
    results: dict[str, dict[str, dict[str, Any]]] = {"reply_warm": reply,
                                                     "cold_first_reply": cold_results}
    for count in p.sessions:
        entry: dict[str, dict[str, Any]] = {}
        for n in names:
            if availability[n] is not None:
                entry[n] = absent(str(availability[n]))
                continue
            step = next((s for s in measured["throughput"].get(n, [])
                         if s.get("sessions") == count), None)
            if step is None or step.get("status") != "ok":
                entry[n] = {"status": (step or {}).get("status", "failed"),
                            "reason": (step or {}).get("reason", "not run")}
            else:
                entry[n] = {"status": "ok", "unit": "msg/s", "n": 1,
                            "median": step["messages_per_s"], "messages": step["messages"],
                            "lost": step["lost"], "duplicated": step["duplicated"]}
        results[f"throughput_{count}"] = entry
    ratios: dict[str, float | None] = {}
    for n in names:
        for key in ("median", "p99"):
            ratios[f"{n} warm {key} / floor {key}"] = ratio(reply[n], reply[FLOOR], key)
        ratios[f"anchor replay median / {n} warm median"] = ratio(reply[ANCHOR], reply[n])
    ratios["floor median / floor (queue only) median"] = ratio(reply[FLOOR],
                                                              reply[FLOOR_QUEUE])
    variants = [FLOOR_QUEUE, FLOOR, *names, ANCHOR]
    rows = [[v, cell(reply[v]), cell(reply[v], "p90"), cell(reply[v], "p99"),
             cell(reply[v], "min"), cell(reply[v], "max"), str(reply[v].get("n", "-"))]
            for v in variants]
    cold_rows = [[n, cell(cold_results[n]), cell(cold_results[n], "p90"),
                  cell(cold_results[n], "max"), str(cold_results[n].get("n", "-"))]
                 for n in names]
    tp_rows = []
    for count in p.sessions:
        for n in names:
            e = results[f"throughput_{count}"][n]
            if e.get("status") == "ok":
                tp_rows.append([str(count), n, str(e["messages"]), f"{e['median']:.1f}",
                                str(e["lost"]), str(e["duplicated"])])
            elif e.get("status") == "absent":
                tp_rows.append([str(count), n, "-", "absent", "-", "-"])
            else:
                tp_rows.append([str(count), n, "-", f"{e['status']}: {e.get('reason', '')}",
                                "-", "-"])
    tables = [
        Table("Warm reply latency (post to delivered reply)",
              ["variant", "p50", "p90", "p99", "min", "max", "n"], rows,
              "floor = two SQLCipher commits and two snapshot reads across two processes, "
              "plus one model-proxy round trip (mock model), no agent logic; anchor replay "
              "= the same queues with both sides polling every 2 s."),
        Table("Cold start to first reply (new conversation: new session and sandbox)",
              ["runtime", "p50", "p90", "max", "n"], cold_rows),
        Table(f"Throughput ({p.per_session} messages per session, back to back)",
              ["sessions", "runtime", "messages", "msg/s", "lost", "duplicated"], tp_rows),
    ]
    method = {
        "iterations": f"warm replies {p.warm} per variant (+{p.warmup} discarded); cold "
                      f"{p.cold} per runtime; throughput at {', '.join(map(str, p.sessions))} "
                      f"sessions x {p.per_session} messages; anchor replay "
                      f"{p.anchor_sessions} session(s) x {p.anchor_messages} message(s)",
        "interleaving": "warm replies: floor, floor (queue only) and every runtime, one "
                        "sample each per round, order rotated every round",
        "model": "mock model through the real model proxy; per-session rate cap lifted",
        "anchor replay": "sandbox and host pollers on independent 2 s clocks with random "
                         "phase, real SQLCipher queues, messages at random moments; measured",
    }
    notes = [f"{n}: absent ({why})" for n, why in availability.items() if why is not None]
    extra = {"throughput": measured["throughput"], "availability": availability,
             "anchor_samples_ms": [round(s * 1000, 1) for s in measured["anchor"]]}
    result = SuiteResult("queue", mode, method, results, ratios, tables, extra, notes)
    result.charts = charts_for(result.payload({}, "", 0.0, []))
    return result


QUEUE_COLOURS = {FLOOR_QUEUE: "#aeb6bf", FLOOR: "#34495e", "process": "#7f8c8d"}


def charts_for(payload: dict[str, Any]) -> dict[str, charts.ChartFn]:
    """The queue charts, drawn from a saved result (``python -m bench render``)."""
    if payload["suite"] == "queue-floor":
        f = payload["results"]["floor"]
        return {"floor": lambda path, sub: charts.grouped_bars(
            path, title="queue floor: round trips and open cost", subtitle=sub,
            groups=list(f), variants=["median"], data={k: {"median": v} for k, v in f.items()},
            ylabel="milliseconds")}
    reply = payload["results"]["reply_warm"]
    names = list(payload["extra"]["availability"])
    variants = [FLOOR_QUEUE, FLOOR, *names, ANCHOR]
    throughput = payload["extra"]["throughput"]
    counts = sorted({s["sessions"] for steps in throughput.values() for s in steps})
    tp_series = {n: [(float(s["sessions"]), float(s["messages_per_s"]))
                     for s in throughput.get(n, []) if s.get("status") == "ok"]
                 for n in names}
    return {
        "latency": lambda path, sub: charts.grouped_bars(
            path, title="queue: warm reply latency vs floor and anchor replay", subtitle=sub,
            groups=["p50", "p99"], variants=variants, colours=QUEUE_COLOURS,
            data={"p50": {v: _as_value(reply[v], "median") for v in variants},
                  "p99": {v: _as_value(reply[v], "p99") for v in variants}},
            ylabel="milliseconds", log=True),
        "throughput": lambda path, sub: charts.lines(
            path, title="queue: throughput across warm sessions", subtitle=sub,
            xlabel="sessions", ylabel="messages per second", series=tp_series,
            logx=len(counts) > 2),
    }


def _as_value(entry: dict[str, Any], key: str) -> Any:
    return entry[key] if entry.get("status") == "ok" else entry
