"""The second red-team family: the agent attacks the host.

``run_host_attacks`` stands up the production control plane (dev mode) on an OCI
runtime, as :func:`.harness.run_redteam` does, engages one **bystander** session, and
then, one probe at a time (:mod:`.hostprobes`):

1. engages a fresh **attacked** session (a probe may get it quarantined);
2. runs the probe inside that session's sandbox, as its uid (under runc through
   ``exec``; under runsc as the init of a sibling sandbox with the session's binds,
   see harness.py for why), while :func:`.instruments.measure_window` pings the
   bystander and samples the host;
3. stops the attacked session and waits for it to be gone.

The first and the last window run the baseline probe: the same launch and hold,
attacking nothing, but spending the sandbox's whole CPU budget (a busy, honest agent;
a hostile session may exhaust its own budget). The higher of their two bystander p99s
is the baseline every other window is held to: on a shared machine the run's own noise
is not the attack's doing.

A probe is **contained** when, during its window:
- the bystander answered every ping, with a reply p99 within 2x the baseline's;
- the event loop never lagged more than 250 ms;
- the host's resident memory grew by less than 100 MiB;
- the attacked session was quarantined, or merely failed itself: it stopped when
  told (a session whose reader thread is stuck can never stop); a probe that plants a
  schema other than the contract's requires the quarantine. An attacker that hangs in
  its own sandbox (under runsc, a connect to a host socket whose backlog the host's cap
  left full blocks for good) has failed itself: its progress file says what it did
  before it hung, and that tally is its line;
- and the probe's own line, from inside, says so (a socket family that opened, a
  binary that ran from memory, a disk that nothing capped is red on its own).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.enums import EngageMode, UnknownSenderPolicy
from ironclaw.contract.layout import SessionLayout
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.egress import EgressConfig
from ironclaw.host.isolation.oci import OciIsolator, SpecHook
from ironclaw.host.isolation.pinned import PinnedImage
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind, runtime_version
from ironclaw.host.isolation.spec import ExtraBind, UserMapping
from ironclaw.host.isolation.volumes import DiskCaps
from ironclaw.host.mailboxes import StopSession
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import AgentGroup, Persona, Wiring

from .attacker import Inside, run_attacker
from .harness import _approve_egress, _engage, _wire
from .hostprobes import HostProbe, baseline_probe, host_probe_plan
from .instruments import WindowFigures, measure_window
from .toolkit import TOOLKIT_MOUNT, build_toolkit

__all__ = ["HOST_WEAKENINGS", "HostAttackReport", "HostObservation", "render_host_table",
           "run_host_attacks"]

REPLY_P99_FACTOR = 2.0
LOOP_LAG_LIMIT_S = 0.25
RSS_GROWTH_LIMIT = 100 * 2**20
STOP_TIMEOUT_S = 30.0
WARM_UP_PINGS = 5
QUICK_HOLD_S = 3.0
# The production disk cap's mechanism at a smaller size, so that filling it (the
# disk-fill probe) takes seconds under gVisor, not its whole deadline.
HARNESS_GROUP_BYTES = 256 * 2**20
BYSTANDER_GROUP = "redteam-bystander"
# Kept across runs: freezing the hostile-db tool takes a while.
TOOLKIT_CACHE = Path("/var/tmp/ironclaw-redteam-toolkits")
FULL_HOLD_S = 5.0
Progress = Callable[[str], None]

# --weaken for this family: each turns one defence off and must turn its probe red.
HOST_WEAKENINGS = {
    # seccomp allows socket() for every address family again
    "socket-families": "socket.af_vsock",
    # seccomp allows memfd_create and execveat again
    "memfd-exec": "memfd.exec",
    # snapshots are opened unhardened and their schema is not compared
    "schema-check": "host.schema.generated_column",
    # sandbox-written files are opened blocking, and read on the event loop
    "untrusted-reads": "host.heartbeat.fifo",
    # no kernel-enforced disk cap: outbound and the workspace live on the state disk
    "disk-cap": "host.disk_fill",
    # no per-socket connection cap (nor accept pacing) on the model proxy's socket
    "socket-cap": "host.connect_flood.model",
}
SPEC_WEAKENINGS = ("socket-families", "memfd-exec")


@attrs.frozen
class HostObservation:
    probe: str
    defence: str
    contained: bool
    observed: str  # the probe's own line, from inside
    verdict: str  # why contained or not, from outside
    figures: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class HostAttackReport:
    runtime: str
    runtime_version: str
    kernel: str
    weakening: str | None
    hold_s: float
    baseline: dict[str, Any]
    observations: tuple[HostObservation, ...]

    @property
    def contained(self) -> bool:
        return bool(self.observations) and all(o.contained for o in self.observations)

    def to_json(self) -> dict[str, Any]:
        return {"family": "host", "runtime": self.runtime,
                "runtime_version": self.runtime_version, "kernel": self.kernel,
                "weakening": self.weakening, "hold_s": self.hold_s,
                "all_contained": self.contained, "baseline": self.baseline,
                "observations": [o.to_json() for o in self.observations]}


def _weaken_seccomp(kind: str | None) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if kind is None or kind not in SPEC_WEAKENINGS:
        return None
    names = ["socket"] if kind == "socket-families" else ["memfd_create", "execveat"]

    def hook(spec: dict[str, Any]) -> dict[str, Any]:
        # An unconditional allow beside whatever filtered rule the profile has.
        spec["linux"]["seccomp"]["syscalls"].append(
            {"names": names, "action": "SCMP_ACT_ALLOW"})
        return spec

    return hook


def judge(probe: HostProbe, inside: Inside, figures: WindowFigures,
          baseline: WindowFigures, *, quarantined: bool, stopped: bool) -> tuple[bool, str]:
    """Contained or not, and why, from one window's figures (see the module doc)."""
    problems = []
    inside_ok = inside.contained
    if inside_ok is None and not quarantined:
        # Silence is a blind spot, unless the quarantine killed the attacker with the
        # sandbox it stood in (runc exec's process dies with its container).
        problems.append("the probe reported nothing")
    elif inside_ok is False:
        problems.append("the probe got through from inside")
    limit = REPLY_P99_FACTOR * baseline.reply_p99_s
    if figures.unanswered or not figures.replies_s:
        problems.append(f"the bystander went unanswered ({figures.unanswered} pings)")
    elif not figures.reply_p99_s <= limit:
        problems.append(f"bystander p99 {figures.reply_p99_s * 1000:.0f} ms > 2x baseline "
                        f"{limit * 1000:.0f} ms")
    if figures.loop_lag_max_s > LOOP_LAG_LIMIT_S:
        problems.append(f"the event loop stalled {figures.loop_lag_max_s * 1000:.0f} ms")
    if figures.rss_growth >= RSS_GROWTH_LIMIT:
        problems.append(f"host RSS grew {figures.rss_growth / 2**20:.0f} MiB")
    if probe.needs_quarantine and not quarantined:
        problems.append("a foreign schema did not get the session quarantined")
    if not stopped:
        problems.append(f"the attacked session did not stop within {STOP_TIMEOUT_S:.0f} s")
    if problems:
        return False, "; ".join(problems)
    fate = ("quarantined" if quarantined
            else "failed only itself (it hung in its own sandbox)" if inside.hung
            else "failed only itself")
    return True, (f"bystander p99 {figures.reply_p99_s * 1000:.0f} ms (baseline "
                  f"{baseline.reply_p99_s * 1000:.0f}), loop lag max "
                  f"{figures.loop_lag_max_s * 1000:.0f} ms, RSS +"
                  f"{figures.rss_growth / 2**20:.0f} MiB, attacked session {fate}")


class _AnySchema:
    """Equal to every schema: the schema check, switched off."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


async def _uncapped_accepts(*args: Any, **kwargs: Any) -> None:
    """The shared accept loop with its per-socket cap and pacing switched off."""
    from ironclaw.host.sockets import serving

    kwargs.update(max_connections=1_000_000, accept_rate=1e9, accept_burst=1_000_000)
    await serving.accept_connections(*args, **kwargs)


@contextlib.contextmanager
def _weaken_host(kind: str | None) -> Iterator[None]:
    """Switch a host-side defence off in this process (the control plane runs here),
    for the run's length only."""
    from ironclaw.contract import untrusted_files
    from ironclaw.contract.queue import snapshot_db
    from ironclaw.host.egress import broker
    from ironclaw.host.modelproxy import proxy
    from ironclaw.host.sessions import doorbell, tail

    async def on_the_loop(work: Callable[[], Any], **_ignored: Any) -> Any:
        return work()

    swaps: list[tuple[Any, str, Any]] = []
    if kind == "schema-check":
        swaps = [(snapshot_db, "harden", lambda conn, path: None),
                 (snapshot_db, "expected_schema", lambda ddl: _AnySchema()),
                 (snapshot_db, "_bound_work", lambda conn: None)]
    elif kind == "socket-cap":
        swaps = [(module, "accept_connections", _uncapped_accepts)
                 for module in (proxy, broker, doorbell)]
    elif kind == "untrusted-reads":
        swaps = [(untrusted_files, "OPEN_FLAGS", os.O_RDONLY | os.O_CLOEXEC),
                 (tail, "run_untrusted", on_the_loop)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, value in swaps:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


async def _ping(plane: ControlPlaneHandles, conversation: str) -> None:
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, "operator", "warm-up")
    with trio.fail_after(120):
        await plane.local.wait_for_reply(conversation, after_index=mark)


async def _wire_bystander(plane: ControlPlaneHandles) -> None:
    """The bystander is an agent of its own group: a group's sessions share its disk
    volume (and its workspace), so the blast radius a probe must stay inside is its
    own agent group."""
    await plane.registry.put_agent_group(AgentGroup(
        id=BYSTANDER_GROUP, name="Bystander", folder=BYSTANDER_GROUP, provider="mock",
        model="mock", persona=Persona(identity="A bystander.", soul="", instructions="")))
    group = await plane.registry.ensure_messaging_group("local", "bystander")
    await plane.registry.put_messaging_group(attrs.evolve(
        group, unknown_sender_policy=UnknownSenderPolicy.PUBLIC))
    await plane.registry.put_wiring(Wiring(
        id="redteam-bystander", messaging_group_id=group.id, agent_group_id=BYSTANDER_GROUP,
        engage_mode=EngageMode.PATTERN, pattern="."))


async def _stop_session(plane: ControlPlaneHandles, session_id: str) -> bool:
    await plane.sessions.mailbox.send(StopSession(session_id, "red team: probe done"))
    with trio.move_on_after(STOP_TIMEOUT_S):
        await plane.sessions.wait_retired(session_id)
        return True
    return False


async def run_host_attacks(kind: RuntimeKind, workdir: Path, *, quick: bool = True,
                           hold_s: float | None = None, only: tuple[str, ...] = (),
                           weakening: str | None = None, image_cache: Path | None = None,
                           progress: Progress = lambda _line: None) -> HostAttackReport:
    """Run the second family under ``kind``; ``workdir`` as for ``run_redteam``."""
    hold = hold_s if hold_s is not None else (QUICK_HOLD_S if quick else FULL_HOLD_S)
    everything = host_probe_plan(hold)
    plan = ([p for p in everything if p.name in only] if only
            else [p for p in everything if p.quick or not quick])
    if weakening is not None and weakening not in HOST_WEAKENINGS:
        raise ValueError(f"unknown weakening {weakening!r}; known: "
                         f"{', '.join(HOST_WEAKENINGS)}")
    with _weaken_host(weakening):
        return await _run(kind, workdir, plan, hold, weakening, image_cache, progress)


async def _run(kind: RuntimeKind, workdir: Path, plan: list[HostProbe], hold: float,
               weakening: str | None, image_cache: Path | None, progress: Progress
               ) -> HostAttackReport:
    state, keys = workdir / "state", workdir / "keys"
    runtime = OciRuntime.find(kind, state)
    if runtime is None:
        raise RuntimeError(f"{kind.value} is not installed")
    mapping = UserMapping()
    progress("building the attacker's toolkit (with its own SQLCipher)")
    toolkits = TOOLKIT_CACHE if image_cache is None else image_cache / "redteam-toolkits"
    toolkit = await trio.to_thread.run_sync(
        lambda: build_toolkit(toolkits, hostile_db=True))
    state.mkdir(mode=0o711, parents=True, exist_ok=True)
    weaken = _weaken_seccomp(weakening)
    image = PinnedImage(state, cache_dir=image_cache)

    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime=kind.value, key_dir=keys, safety_poll_s=0.5,
        heartbeat_interval_s=1.0, user_mapping=mapping, egress=EgressConfig(enabled=True),
        sandbox_disk=DiskCaps(group_bytes=HARNESS_GROUP_BYTES))

    def make_isolator(extra_hook: SpecHook | None = None) -> OciIsolator:
        def hook(spec: dict[str, Any]) -> dict[str, Any]:
            spec = weaken(spec) if weaken is not None else spec
            return extra_hook(spec) if extra_hook is not None else spec

        return OciIsolator(
            runtime, image, state_dir=state, mapping=mapping,
            extra_binds=(ExtraBind(toolkit, TOOLKIT_MOUNT),),
            spec_hook=hook if (weaken or extra_hook) else None,
            allow_weakened=weakening is not None, own_dirs=(keys.parent,),
            # The production mechanism (app.py passes config.sandbox_disk too).
            disk=None if weakening == "disk-cap" else config.sandbox_disk)

    observations: list[HostObservation] = []
    windows: list[tuple[HostProbe, Inside, WindowFigures, dict[str, Any]]] = []
    progress(f"starting a control plane on {kind.value}")
    async with trio.open_nursery() as nursery:
        plane: ControlPlaneHandles = await nursery.start(ControlPlane(
            config, credentials=Credentials(), isolator=make_isolator()).run)
        await _approve_egress(plane)
        await _wire_bystander(plane)
        await _engage(plane, "bystander")
        for _ in range(WARM_UP_PINGS):  # a warm bystander, so the baseline is not a start
            await _ping(plane, "bystander")
        # The baseline brackets the attacks: once first and once last.
        for index, probe in enumerate([baseline_probe(hold), *plan, baseline_probe(hold)]):
            conversation = f"attacked-{index}"
            await _wire(plane, conversation)
            session_id = await _engage(plane, conversation)
            progress(f"{probe.name}: attacking session {session_id}")
            outbound = SessionLayout.under(state, session_id).queues.outbound_dir
            quarantined = False

            async def watch_quarantine(session_id: str = session_id) -> None:
                nonlocal quarantined
                async with plane.events.subscribe("*") as events:
                    async for item in events:
                        kind_name = str(getattr(item, "type", ""))
                        event = getattr(item, "event", None)
                        if ("quarantin" in kind_name
                                and getattr(event, "session_id", None) == session_id):
                            quarantined = True

            async with trio.open_nursery() as watching:
                watching.start_soon(watch_quarantine)
                async with measure_window(plane, "bystander", outbound, hold) as window:
                    started = trio.current_time()
                    inside = await run_attacker(runtime, make_isolator, state, keys,
                                                 session_id, probe, outbound)
                    # A probe that is over at once still gets a window of the hold's
                    # length, so the bystander is timed as often as for any other.
                    await trio.sleep_until(started + hold)
                stopped = await _stop_session(plane, session_id)
                watching.cancel_scope.cancel()
            assert window.figures is not None
            windows.append((probe, inside, window.figures,
                            {"quarantined": quarantined, "stopped": stopped,
                             "attacker_hung": inside.hung,
                             "fifo_releases_by_harness": window.fifo_releases}))
        nursery.cancel_scope.cancel()
    # The noisier of the two baselines: the machine's own noise in this run is not
    # the attack's doing.
    first, last = windows[0][2], windows[-1][2]
    baseline = first if first.reply_p99_s >= last.reply_p99_s else last
    for probe, inside, figures, fate in windows[1:-1]:
        contained, verdict = judge(probe, inside, figures, baseline,
                                   quarantined=fate["quarantined"], stopped=fate["stopped"])
        observations.append(HostObservation(probe.name, probe.defence, contained, inside.observed,
                                            verdict, {**figures.to_json(), **fate}))
    left = await trio.to_thread.run_sync(leftover_runtime_state, state)
    if left:
        observations.append(HostObservation(
            "cleanup.no_leftovers", "none", False, "", ", ".join(left)[:300], {}))
    return HostAttackReport(
        runtime=kind.value,
        runtime_version=await trio.to_thread.run_sync(runtime_version, runtime.binary),
        kernel=f"{platform.system()} {platform.release()}", weakening=weakening,
        hold_s=hold, baseline=baseline.to_json(), observations=tuple(observations))


def render_host_table(report: HostAttackReport) -> str:
    base = report.baseline
    rows = [f"red team, second family (the agent attacks the host): {report.runtime} "
            f"({report.runtime_version}), {report.kernel}, hold {report.hold_s:.0f} s",
            f"baseline: bystander p50 {base['reply_p50_ms']} ms, p99 {base['reply_p99_ms']} "
            f"ms, loop lag max {base['loop_lag_max_ms']} ms, RSS {base['rss_peak_mib']} MiB",
            f"{'':4} {'probe':34} {'p50 ms':>7} {'p99 ms':>7} {'lag p99':>7} {'RSS+MiB':>7}"
            "  verdict"]
    for o in report.observations:
        f = o.figures

        def num(key: str, figures: dict[str, Any] = f) -> str:
            value = figures.get(key)
            return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
                else f"{value:.0f}"

        rows.append(f"{'PASS' if o.contained else 'FAIL':4} {o.probe:34} "
                    f"{num('reply_p50_ms'):>7} {num('reply_p99_ms'):>7} "
                    f"{num('loop_lag_p99_ms'):>7} {num('rss_growth_mib'):>7}  "
                    f"{o.verdict[:110]}")
    verdict = "every probe contained" if report.contained else "NOT CONTAINED"
    rows.append(f"verdict: {verdict} ({sum(o.contained for o in report.observations)}/"
                f"{len(report.observations)})")
    return "\n".join(rows)
