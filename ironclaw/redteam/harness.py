"""The red-team harness: a real control plane, real sessions, attacks from inside.

``run_redteam`` stands up the production control plane (dev mode: the mock model and
the demo agent) on the chosen OCI runtime, with one addition to the production spec:
the attacker's toolkit bound read-only at ``/opt/redteam``. It approves egress to one
host for the demo group (so the egress socket exists and can be attacked), engages
real sessions over the local channel, and then, inside each live sandbox, runs every
probe of :mod:`.probes` as the sandbox's uid. It also configures a mount root beside
the state directory and approves two host mounts from it for the demo group (one
read-only, one writable), with a sibling directory and a file of the root's own left
ungranted: the ``mount.`` probes check both sides of that grant. Two checks run from
outside: a request for a new tool must end pending at the gateway, not applied; and
after the plane stops, nothing of the sandboxes may be left on the host.

A *weakening* (the negative control) deliberately builds a weaker sandbox (a network,
a writable rootfs, the state directory or the whole mount root bound in) and must
turn the harness red.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shlex
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from ironclaw.contract.agent_config import (
    MOCK_MODEL_HOST,
    AgentConfig,
    ModelApi,
    ProviderConfig,
)
from ironclaw.contract.enums import ChangeStatus, DecisionOutcome, EngageMode
from ironclaw.contract.layout import SessionLayout
from ironclaw.host.app import ControlPlane, ControlPlaneHandles
from ironclaw.host.config import ControlPlaneConfig
from ironclaw.host.config.devseed import DEMO_GROUP
from ironclaw.host.egress import EgressConfig
from ironclaw.host.gateway import GatewayConfig, MountRoot, Principal
from ironclaw.host.isolation import HostMount, LaunchSpec, SandboxExited
from ironclaw.host.isolation.oci import OciIsolator, SpecHook, container_id
from ironclaw.host.isolation.pinned import PinnedImage
from ironclaw.host.isolation.pool import PoolSettings
from ironclaw.host.isolation.reconcile import leftover_runtime_state
from ironclaw.host.isolation.runtimes import OciRuntime, RuntimeKind, runtime_version
from ironclaw.host.isolation.spec import AGENT_UID, ExtraBind, UserMapping
from ironclaw.host.modelproxy import Credentials
from ironclaw.host.registry import Wiring

from .mountplan import approve_mounts, plant_mount_root
from .probes import PROBE, ProbeTargets, probe_plan
from .toolkit import TOOLKIT_MOUNT, build_toolkit

__all__ = ["WEAKENINGS", "Observation", "RedTeamReport", "run_redteam"]

APPROVED_HOST = "approved.example.com"
UNAPPROVED_HOST = "unapproved.example.net"
OWNER = Principal("redteam-operator", frozenset({"owner"}))
# The probe each weakening must turn red: the harness's own blind-spot check.
WEAKENINGS = {"network": "net.interfaces", "writable-rootfs": "rootfs.write",
              "state-dir": "host.marker", "mount-root": "mount.beside"}
Progress = Callable[[str], None]


@attrs.frozen
class Observation:
    session: int  # which sandbox (0-based); -1 for checks made from outside
    probe: str
    contained: bool
    observed: str


@attrs.frozen
class RedTeamReport:
    runtime: str
    runtime_version: str
    kernel: str
    image_digest: str
    weakening: str | None
    sessions: int
    observations: tuple[Observation, ...]

    @property
    def contained(self) -> bool:
        return bool(self.observations) and all(o.contained for o in self.observations)

    def to_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "runtime_version": self.runtime_version,
                "kernel": self.kernel, "image_digest": self.image_digest,
                "weakening": self.weakening, "sessions": self.sessions,
                "all_contained": self.contained,
                "observations": [attrs.asdict(o) for o in self.observations]}


def _host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("1.1.1.1", 53))  # no packet is sent; this picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def _resolver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                return parts[1]
    except OSError:
        pass
    return "1.1.1.1"


def _weaken(kind: str | None, state: Path, workdir: Path, mapping: UserMapping
            ) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if kind is None:
        return None
    if kind not in WEAKENINGS:
        raise ValueError(f"unknown weakening {kind!r}; known: {', '.join(WEAKENINGS)}")

    def hook(spec: dict[str, Any]) -> dict[str, Any]:
        if kind == "network":
            spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                           if ns["type"] != "network"]
            # sysfs can only be mounted by the owner of the network namespace.
            spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys"]
        elif kind == "writable-rootfs":
            copy = workdir / "rootfs-writable"
            if not copy.exists():
                shutil.copytree(spec["root"]["path"], copy, symlinks=True)
                for path in (copy, *copy.rglob("*")):
                    os.chown(path, mapping.agent_host_uid, mapping.agent_host_uid,
                             follow_symlinks=False)
                    if not path.is_symlink():
                        path.chmod(path.stat().st_mode | 0o200)
            spec["root"] = {"path": str(copy), "readonly": False}
        else:
            # Inside the workspace: the image is read-only and shared, and a runtime
            # would create a missing mount point in it.
            name, source = (("host-state", state) if kind == "state-dir"
                            else ("mount-root", workdir / "mount-root"))
            spec["mounts"].append({"destination": f"/workspace/{name}", "type": "bind",
                                   "source": str(source),
                                   "options": ["rbind", "nosuid", "nodev", "noexec", "ro"]})
        return spec

    return hook


async def _wire(plane: ControlPlaneHandles, conversation: str) -> None:
    group = await plane.registry.ensure_messaging_group("local", conversation)
    await plane.registry.put_wiring(Wiring(
        id=f"redteam-{conversation}", messaging_group_id=group.id,
        agent_group_id=DEMO_GROUP, engage_mode=EngageMode.PATTERN, pattern="."))


async def _engage(plane: ControlPlaneHandles, conversation: str) -> str:
    """Talk to the agent until it answers; return the session's id."""
    mark = plane.local.cursor(conversation)
    await plane.local.post(conversation, "operator", "hello")
    with trio.fail_after(120):
        reply = await plane.local.wait_for_reply(conversation, after_index=mark)
    if reply.text != "echo: hello":
        raise RuntimeError(f"the agent answered {reply.text!r:.80}, not the echo")
    group = await plane.registry.find_messaging_group("local", conversation)
    sessions = [s for s in await plane.registry.list_sessions()
                if group is not None and s.messaging_group_id == group.id]
    if len(sessions) != 1:
        raise RuntimeError(f"expected one session for {conversation}, found {len(sessions)}")
    return sessions[0].id


def _parse(output: bytes, index: int, expected: int, exit_note: str) -> list[Observation]:
    seen: dict[str, Observation] = {}
    for line in output.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
            seen[str(item["probe"])] = Observation(index, str(item["probe"]),
                                                   item["contained"] is True,
                                                   str(item["observed"]))
        except (ValueError, KeyError, TypeError):
            continue
    if len(seen) < expected:  # a probe that said nothing is a blind spot: red
        seen["harness.all_probes_ran"] = Observation(
            index, "harness.all_probes_ran", False,
            f"{len(seen)} of {expected} probes reported ({exit_note})")
    return list(seen.values())


def _script(targets: ProbeTargets) -> str:
    return "; ".join(shlex.join([PROBE, *args]) for args in probe_plan(targets))


async def _probe_by_exec(runtime: OciRuntime, session_id: str, index: int,
                         targets: ProbeTargets) -> list[Observation]:
    """runc and crun: ``exec`` into the live sandbox. The new process gets the
    container's namespaces, cgroup, capabilities and seccomp profile: it stands where
    a compromised agent stands."""
    argv = runtime.exec_argv(container_id(session_id),
                             [str(TOOLKIT_MOUNT / "busybox"), "sh", "-c", _script(targets)],
                             uid=AGENT_UID)
    with trio.fail_after(300):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False)
    return _parse(done.stdout, index, len(probe_plan(targets)),
                  f"exit {done.returncode}: "
                  + done.stderr.decode("utf-8", "replace")[-300:])


async def _probe_as_init(make_isolator: Callable[[SpecHook], OciIsolator], spec: LaunchSpec,
                         index: int, targets: ProbeTargets) -> list[Observation]:
    """runsc: a process made by ``runsc exec`` does not carry the spec's seccomp filter,
    while everything the agent itself can start does. So the attacker runs as the init
    process of a second sandbox for the same session: the production spec, the same
    binds, the same uid, with the toolkit in place of the agent."""
    script = "exec 1>&2; " + _script(targets)

    def as_attacker(config: dict[str, Any]) -> dict[str, Any]:
        config["process"]["args"] = [str(TOOLKIT_MOUNT / "busybox"), "sh", "-c", script]
        return config

    isolator = make_isolator(as_attacker)
    output, note = b"", "no exit"
    try:
        with trio.fail_after(300):
            await isolator.run(spec, container_name=f"ic-probe-{index}-{spec.session_id}")
    except SandboxExited as exited:
        output, note = exited.stderr_tail, f"exit {exited.returncode}"
    return _parse(output, index, len(probe_plan(targets)), note)


def _session_spec(state: Path, keys: Path, session_id: str,
                  mounts: tuple[HostMount, ...] = ()) -> LaunchSpec:
    layout = SessionLayout.under(state, session_id)
    run_dir = layout.root / "run-redteam"
    run_dir.mkdir(mode=0o711, exist_ok=True)
    config = AgentConfig(session_id=session_id, agent_group_id=DEMO_GROUP,
                         provider=ProviderConfig(api=ModelApi.ANTHROPIC_MESSAGES,
                                                 host=MOCK_MODEL_HOST, model="mock"))
    return LaunchSpec(session_id=session_id, agent_group_id=DEMO_GROUP,
                      queues=layout.queues, key_file=keys / session_id / "session.key",
                      socket_dir=layout.socket_dir,
                      workspace=state / "workspaces" / DEMO_GROUP, run_dir=run_dir,
                      config=config, mounts=mounts)


async def _self_modification(plane: ControlPlaneHandles, conversation: str) -> Observation:
    directive = json.dumps({"kind": "enabled_tools", "payload": {"tools": ["read_file"]},
                            "reason": "red team: the agent asks for a new tool"})
    before = (await plane.registry.get_agent_group(DEMO_GROUP)).enabled_tools
    async with plane.events.subscribe("change.submitted") as submitted:
        await plane.local.post(conversation, "operator",
                               f"tool:request_capability_change {directive}")
        with trio.fail_after(60):
            await submitted.receive()
    pending = [c for c in await plane.gateway.pending()
               if c.change.kind.value == "enabled_tools"
               and c.change.requested_by.startswith("session:")]
    after = (await plane.registry.get_agent_group(DEMO_GROUP)).enabled_tools
    held = bool(pending) and all(c.status is ChangeStatus.PENDING for c in pending)
    return Observation(-1, "self_modification.held_at_gateway", held and after == before,
                       f"{len(pending)} pending, enabled tools before {list(before)} "
                       f"after {list(after)}")


async def _approve_egress(plane: ControlPlaneHandles) -> None:
    stored = await plane.gateway.submit("egress", DEMO_GROUP, {"hosts": [APPROVED_HOST]},
                                        requested_by=OWNER, reason="red team")
    decided = await plane.gateway.decide(stored.change.id, DecisionOutcome.APPROVE, OWNER)
    if decided.status is not ChangeStatus.APPLIED:
        raise RuntimeError(f"the egress grant was not applied: {decided.status}")


async def run_redteam(kind: RuntimeKind, workdir: Path, *, sessions: int = 1,
                      weakening: str | None = None, image_cache: Path | None = None,
                      pool: bool = False,
                      progress: Progress = lambda _line: None) -> RedTeamReport:
    """Attack ``sessions`` live sandboxes under ``kind``; ``workdir`` must be reachable
    by the sandbox's mapped root (mode 0711 or wider on every parent). ``pool``
    (runsc): every session runs on a claimed warm sandbox (the warm pool), and the
    probes run as init of a sandbox with that session's binds, as without it."""
    state, keys = workdir / "state", workdir / "keys"
    runtime = OciRuntime.find(kind, state)
    if runtime is None:
        raise RuntimeError(f"{kind.value} is not installed")
    if weakening == "network" and kind is RuntimeKind.RUNSC:
        runtime = attrs.evolve(runtime, network="host")
    mapping = UserMapping()
    progress("building the attacker's toolkit")
    toolkit = await trio.to_thread.run_sync(build_toolkit, workdir / "toolkit")
    state.mkdir(mode=0o711, parents=True, exist_ok=True)
    marker = f"ironclaw-redteam-marker-{secrets.token_hex(16)}"
    marker_dir = state / "redteam"
    marker_dir.mkdir(mode=0o755, exist_ok=True)
    (marker_dir / "marker.txt").write_text(marker + "\n")
    (marker_dir / "marker.txt").chmod(0o644)  # world-readable: only the wall protects it
    mounts = plant_mount_root(workdir / "mount-root", mapping.agent_host_uid)
    weaken = _weaken(weakening, state, workdir, mapping)
    image = PinnedImage(state, cache_dir=image_cache)

    def make_isolator(extra_hook: SpecHook | None = None) -> OciIsolator:
        def hook(config: dict[str, Any]) -> dict[str, Any]:
            config = weaken(config) if weaken is not None else config
            return extra_hook(config) if extra_hook is not None else config

        return OciIsolator(
            runtime, image, state_dir=state, mapping=mapping,
            extra_binds=(ExtraBind(toolkit, TOOLKIT_MOUNT),),
            spec_hook=hook if (weaken or extra_hook) else None,
            allow_weakened=weakening is not None, own_dirs=(keys.parent,))

    isolator = make_isolator()
    config = ControlPlaneConfig(
        state_dir=state, dev=True, runtime=kind.value, key_dir=keys, safety_poll_s=0.5,
        heartbeat_interval_s=1.0, user_mapping=mapping,
        egress=EgressConfig(enabled=True),
        gateway=GatewayConfig(mount_roots=(MountRoot(str(mounts.root), writable=True),)),
        sandbox_pool=PoolSettings(enabled=pool, max_total=1, max_per_group=1,
                                  prewarm_groups=(DEMO_GROUP,), memory_floor_bytes=0,
                                  tick_s=0.2))
    observations: list[Observation] = []
    digest = ""
    progress(f"starting a control plane on {kind.value}")
    async with trio.open_nursery() as nursery:
        plane: ControlPlaneHandles = await nursery.start(ControlPlane(
            config, credentials=Credentials(), isolator=isolator).run)
        digest = (await isolator.check_image()).digest
        await _approve_egress(plane)
        await approve_mounts(plane, mounts, OWNER)
        conversations = [f"redteam-{i}" for i in range(sessions + 1)]
        for conversation in conversations:
            await _wire(plane, conversation)
        progress(f"engaging {sessions} session(s) and a bystander")
        ids: dict[str, str] = {}

        async def engage(conversation: str) -> None:
            ids[conversation] = await _engage(plane, conversation)

        if plane.pool is not None:  # one at a time, each on a warm sandbox
            for conversation in conversations:
                with trio.fail_after(120):
                    await plane.pool.wait_warm(DEMO_GROUP)
                await engage(conversation)
            claimed = plane.pool.claims
            observations.append(Observation(
                -1, "pool.sessions_claimed", claimed == len(conversations),
                f"{claimed} of {len(conversations)} sessions on claimed warm sandboxes"))
        else:
            async with trio.open_nursery() as engaging:
                for conversation in conversations:
                    engaging.start_soon(engage, conversation)
        bystander = ids[conversations[-1]]
        targets = ProbeTargets(
            host_address=_host_address(), resolver=_resolver(), marker=marker,
            marker_relative="redteam/marker.txt",
            master_key_path=str(state / "master.key"),
            key_store_path=str(state / "keys" / "sealed-keys.json"),
            other_session_id=bystander,
            other_session_key_path=str(keys / bystander / "session.key"),
            other_session_dir=str(state / "sessions" / bystander),
            model_socket="/run/ironclaw/sock/model.sock",
            egress_socket="/run/ironclaw/sock/egress.sock", unapproved_host=UNAPPROVED_HOST,
            mount_root=str(mounts.root), mount_text=mounts.text, mount_marker=mounts.marker)
        progress("probing from inside each sandbox")
        limiter = trio.CapacityLimiter(4)

        async def attack(index: int, conversation: str) -> None:
            async with limiter:
                if runtime.gvisor:
                    found = await _probe_as_init(
                        make_isolator,
                        _session_spec(state, keys, ids[conversation], mounts.grants()),
                        index, targets)
                else:
                    found = await _probe_by_exec(runtime, ids[conversation], index, targets)
                observations.extend(found)

        async with trio.open_nursery() as attacking:
            for index, conversation in enumerate(conversations[:-1]):
                attacking.start_soon(attack, index, conversation)
        progress("asking for a new tool from inside")
        observations.append(await _self_modification(plane, conversations[0]))
        nursery.cancel_scope.cancel()
    left = await trio.to_thread.run_sync(leftover_runtime_state, state)
    observations.append(Observation(-1, "cleanup.no_leftovers", not left,
                                    "nothing left" if not left else ", ".join(left)[:300]))
    return RedTeamReport(
        runtime=kind.value,
        runtime_version=await trio.to_thread.run_sync(runtime_version, runtime.binary),
        kernel=f"{platform.system()} {platform.release()}", image_digest=digest,
        weakening=weakening, sessions=sessions,
        observations=tuple(sorted(observations, key=lambda o: (o.session, o.probe))))


def render_table(report: RedTeamReport) -> str:
    """A PASS/FAIL table for the terminal."""
    rows = [f"red team: {report.runtime} ({report.runtime_version}), {report.kernel}, "
            f"image sha256:{report.image_digest[:16]}...",
            f"{'':4} {'session':>7}  {'probe':36} observed"]
    for o in report.observations:
        where = "host" if o.session < 0 else str(o.session)
        rows.append(f"{'PASS' if o.contained else 'FAIL':4} {where:>7}  {o.probe:36} "
                    f"{o.observed[:90]}")
    verdict = "every probe contained" if report.contained else "NOT CONTAINED"
    rows.append(f"verdict: {verdict} ({sum(o.contained for o in report.observations)}/"
                f"{len(report.observations)})")
    return "\n".join(rows)

