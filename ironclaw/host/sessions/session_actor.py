"""One live session: its sandboxed agent, doorbell, model socket and outbound tail.

The actor prepares everything the agent needs (queue directories, the key file on a
tmpfs, the agent's config, routing and destinations in inbound), launches the agent
through the Isolator under a supervisor (restart with backoff, park after repeated
crashes), and retires itself once idle. Its durable state (queues, cursor, history)
outlives it: the next wake starts it again where it left off.

With a warm pool, the first launch is a claim instead: a sandbox booted ahead of
demand takes the session's directories before the tail watches them or a socket is
served in them (``warmpool``), and starts on its ``go``. A relaunch after a crash is
always a fresh launch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs
import trio

from ironclaw.contract.agent_config import AgentConfig, PersonaDocs
from ironclaw.contract.clock import now_us
from ironclaw.contract.layout import (
    EGRESS_SOCKET,
    MCP_SOCKET,
    MODEL_SOCKET,
    WAKE_SOCKET,
    SessionLayout,
)
from ironclaw.contract.rows import Destination, ProcessingAck, SessionRouting
from ironclaw.host.egress import EgressRoute
from ironclaw.host.events import SandboxExitedEvent, SandboxLaunched, SandboxStopped
from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.isolation import HostMount, Isolator, LaunchSpec, SandboxExited
from ironclaw.host.isolation.volumes import NotAdoptable
from ironclaw.host.keys import write_session_key_file
from ironclaw.host.mailboxes import SessionHealth, TailBatch
from ironclaw.host.mcp import McpRoute
from ironclaw.host.modelproxy import Credentials, SessionRoute
from ironclaw.host.registry import AgentGroup, ContainerStatus, Registry, Session
from ironclaw.host.sessions.doorbell import Doorbell
from ironclaw.host.sessions.model_provider import agent_provider, proxy_endpoint
from ironclaw.host.sessions.progress import SessionProgress
from ironclaw.host.sessions.quarantine import Quarantine
from ironclaw.host.sessions.tail import OutboundTail
from ironclaw.host.sessions.warmpool import Claim, WarmPool
from ironclaw.runtime import BackoffPolicy, EventSink, Supervisor, SupervisorState

logger = logging.getLogger(__name__)


class ModelSockets(Protocol):
    async def serve_session(self, route: SessionRoute) -> Path: ...

    async def stop_session(self, session_id: str) -> None: ...


class EgressSockets(Protocol):
    async def granted(self, agent_group_id: str) -> bool: ...

    async def serve_session(self, route: EgressRoute) -> Path: ...

    async def stop_session(self, session_id: str) -> None: ...


class MountGrants(Protocol):
    async def mounts(self, agent_group_id: str) -> tuple[HostMount, ...]:
        """The group's approved host mounts, under the roots configured now."""
        ...
class McpSockets(Protocol):
    async def granted(self, agent_group_id: str) -> bool: ...

    async def serve_session(self, route: McpRoute) -> Path: ...

    async def stop_session(self, session_id: str) -> None: ...


class BatchSink(Protocol):
    async def submit(self, batch: TailBatch) -> None: ...


@attrs.frozen
class SessionSettings:
    key_dir: Path  # on a tmpfs where the host has one: keys never touch a disk
    idle_timeout_s: float = 600.0
    safety_poll_s: float = 2.0
    heartbeat_interval_s: float = 5.0
    sandbox_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)


@attrs.define
class SessionDeps:
    state_dir: Path
    registry: Registry
    queues: SessionQueues
    isolator: Isolator
    models: ModelSockets
    credentials: Credentials
    delivery: BatchSink
    progress: SessionProgress
    events: EventSink
    settings: SessionSettings
    # The egress broker; None: no session gets egress, whatever its grants say.
    egress: EgressSockets | None = None
    # The groups' granted host mounts; None: no sandbox gets any.
    mounts: MountGrants | None = None
    # The MCP broker; None: no session gets MCP tools, whatever its grants say.
    mcp: McpSockets | None = None
    quarantine: Quarantine = attrs.Factory(Quarantine)
    # Sandboxes booted ahead of demand (OCI runtimes); None: every launch is cold.
    pool: WarmPool | None = None


class SessionActor:
    def __init__(self, session: Session, deps: SessionDeps, *,
                 previous_run_blamed: bool = False) -> None:
        """``previous_run_blamed``: the session's last sandbox was put down for its own
        fault (stuck). Otherwise the host ended it, or died, and the first launch here
        tells the agent so; a relaunch after the sandbox exited on its own never does."""
        self.session = session
        self._deps = deps
        self._next_launch_blameless = not previous_run_blamed
        self._last_activity = 0.0
        self._scope: trio.CancelScope | None = None
        self._doorbell: Doorbell | None = None
        self._tail: OutboundTail | None = None
        self._supervisor: Supervisor | None = None
        self._launched_at: int | None = None
        self._claim: Claim | None = None
        self.retired_reason: str | None = None

    @property
    def session_id(self) -> str:
        return self.session.id

    def ring(self) -> None:
        self._touch()
        if self._doorbell is not None:
            self._doorbell.ring()

    def stop(self, reason: str) -> None:
        self.retired_reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def resume(self) -> bool:
        return self._supervisor.resume() if self._supervisor else False

    def health(self) -> SessionHealth:
        tail = self._tail.state if self._tail else None
        container = tail.container if tail else None
        return SessionHealth(
            session_id=self.session.id, agent_group_id=self.session.agent_group_id,
            running=bool(self._supervisor and self._supervisor.state is SupervisorState.RUNNING),
            heartbeat_at=tail.heartbeat_at if tail else None,
            current_tool=container.current_tool if container else None,
            tool_started_at=container.tool_started_at if container else None,
            tool_declared_timeout_ms=container.tool_declared_timeout_ms if container else None,
            oldest_claim_at=tail.oldest_claim_at if tail else None,
            last_activity=now_us() - int((trio.current_time() - self._last_activity) * 1e6),
            launched_at=self._launched_at)

    @property
    def parked(self) -> bool:
        return bool(self._supervisor and self._supervisor.state is SupervisorState.PARKED)

    def _touch(self) -> None:
        self._last_activity = trio.current_time()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        deps, session = self._deps, self.session
        self._touch()
        group = await deps.registry.get_agent_group(session.agent_group_id)
        writer = await deps.queues.inbound(session.id)
        routing, destinations = await self._routing(group)
        await trio.to_thread.run_sync(writer.set_routing, routing)
        await trio.to_thread.run_sync(writer.set_destinations, destinations)
        # Egress is decided at launch: an approved change respawns the group's sandboxes,
        # and the broker re-reads the allowlist on every request anyway (revocation).
        egress = deps.egress if deps.egress and await deps.egress.granted(group.id) else None
        # Mounts too are read at launch: revoking one respawns the group's sandboxes,
        # which start without it.
        mounts = await deps.mounts.mounts(group.id) if deps.mounts else ()
        # The same for MCP: an mcp_access change respawns; the broker re-reads the grant
        # for every listing and call.
        mcp = deps.mcp if deps.mcp and await deps.mcp.granted(group.id) else None
        spec = await trio.to_thread.run_sync(self._prepare, group, egress is not None,
                                             mcp is not None)
        spec = attrs.evolve(spec, mounts=mounts)
        await deps.isolator.prepare_host(spec)  # before the tail watches outbound
        keys = await trio.to_thread.run_sync(deps.queues.keys, session.id)
        self._doorbell = Doorbell(spec.socket_dir / WAKE_SOCKET)
        self._tail = OutboundTail(
            session_id=session.id, agent_group_id=group.id, queues=spec.queues,
            key=keys.outbound, cursor=await deps.progress.cursor(session.id),
            submit=deps.delivery.submit, apply_acks=self._apply_acks,
            on_activity=self._touch, safety_poll_s=deps.settings.safety_poll_s,
            on_hostile=self._quarantine)
        self._supervisor = Supervisor(
            f"sandbox:{session.id}", functools.partial(self._sandbox, spec),
            policy=deps.settings.sandbox_backoff, events=deps.events)
        # Before the tail watches outbound or a socket is served: a claim moves the
        # session's directories.
        self._claim = await self._claim_warm(spec)
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                await nursery.start(self._doorbell.serve)
                await deps.models.serve_session(SessionRoute(
                    session.id, group.id, proxy_endpoint(group, deps.credentials),
                    spec.socket_dir / MODEL_SOCKET))
                if egress is not None:
                    await egress.serve_session(EgressRoute(session.id, group.id,
                                                           spec.socket_dir / EGRESS_SOCKET))
                if mcp is not None:
                    await mcp.serve_session(McpRoute(
                        session.id, group.id, spec.socket_dir / MCP_SOCKET,
                        servers_dir=spec.run_dir.parent / "mcp",
                        group_servers_dir=deps.state_dir / "mcp" / group.folder,
                        workspace=spec.workspace))
                await nursery.start(self._tail.run)
                nursery.start_soon(self._supervisor.run)
                nursery.start_soon(self._retire_when_idle)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    await deps.models.stop_session(session.id)
                for broker in (egress, mcp):
                    if broker is not None:
                        with contextlib.suppress(Exception):
                            await broker.stop_session(session.id)
                with contextlib.suppress(Exception):
                    await deps.registry.set_container_status(session.id, ContainerStatus.PARKED
                                                             if self.parked else
                                                             ContainerStatus.STOPPED)
                with contextlib.suppress(FileNotFoundError):
                    spec.key_file.unlink()
                if self._claim is not None:  # claimed, never started
                    await self._claim.slot.discard()

    async def _claim_warm(self, spec: LaunchSpec) -> Claim | None:
        pool = self._deps.pool
        if pool is None or spec.mounts:
            # A warm sandbox's binds were fixed when it was created, before any grant:
            # a group with host mounts always launches cold, with its mounts bound.
            return None
        claim = pool.take(spec.agent_group_id)
        if claim is not None:
            try:
                await claim.adopt(spec)
            except NotAdoptable as refused:
                logger.info("session %s launches cold: %s", spec.session_id, refused)
                await claim.slot.discard()
                return None
            except BaseException:
                await claim.slot.discard()
                raise
        return claim

    async def _routing(self, group: AgentGroup) -> tuple[SessionRouting, list[Destination]]:
        deps, session = self._deps, self.session
        routing = SessionRouting(None, None, session.thread_id)
        if session.messaging_group_id:
            mg = await deps.registry.get_messaging_group(session.messaging_group_id)
            routing = SessionRouting(mg.channel, mg.platform_id, session.thread_id)
        destinations = [
            Destination(name=d.name, type=d.type, display_name=d.display_name,
                        channel_type=d.channel, platform_id=d.platform_id,
                        agent_group_id=d.target_agent_group_id)
            for d in await deps.registry.destinations_for(group.id)]
        return routing, destinations

    def _prepare(self, group: AgentGroup, egress: bool, mcp: bool) -> LaunchSpec:
        """Blocking filesystem work, on a worker thread."""
        deps, sid = self._deps, self.session.id
        layout = SessionLayout.under(deps.state_dir, sid)
        queues = layout.create()
        for granted, name in ((egress, EGRESS_SOCKET), (mcp, MCP_SOCKET)):
            # Left by a control plane that died without cleaning up: without a grant
            # there is no such socket at all, not even a dead one.
            stale = layout.socket_dir / name
            if not granted and stale.is_socket():
                stale.unlink()
        run_dir = layout.root / "run"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        workspace = deps.state_dir / "workspaces" / group.folder
        workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_file = deps.settings.key_dir / sid / "session.key"
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_session_key_file(key_file, deps.queues.keys(sid).secret())
        config = AgentConfig(
            session_id=sid, agent_group_id=group.id,
            provider=agent_provider(group, deps.credentials),
            persona=PersonaDocs(group.persona.identity, group.persona.soul,
                                group.persona.instructions),
            enabled_tools=group.enabled_tools, egress=egress, mcp=mcp,
            heartbeat_interval_s=deps.settings.heartbeat_interval_s,
            safety_poll_interval_s=deps.settings.safety_poll_s)
        return LaunchSpec(session_id=sid, agent_group_id=group.id, queues=queues,
                          key_file=key_file, socket_dir=layout.socket_dir,
                          workspace=workspace, run_dir=run_dir, config=config)

    async def _sandbox(self, spec: LaunchSpec, *,
                       task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        deps = self._deps
        runtime = deps.isolator.name
        spec = attrs.evolve(spec, config=attrs.evolve(
            spec.config, previous_run_blameless=self._next_launch_blameless))
        # Any later launch follows a sandbox that exited on its own (crashed, killed
        # for memory): its unfinished turn counts.
        self._next_launch_blameless = False
        await deps.registry.set_container_status(spec.session_id, ContainerStatus.RUNNING)

        async def launched(*, task_status: trio.TaskStatus[int]) -> None:
            claim, self._claim = self._claim, None
            if claim is not None:
                await claim.run(spec, task_status=task_status)
            else:
                await deps.isolator.run(spec, task_status=task_status)

        pid: int | None = None
        ended_on_its_own = False
        try:
            async with trio.open_nursery() as nursery:
                pid = await nursery.start(launched)
                self._launched_at = now_us()
                deps.events.publish(SandboxLaunched(spec.session_id, runtime, pid))
                task_status.started(pid)
        except* SandboxExited as group:
            ended_on_its_own = True
            for exited in group.exceptions:
                assert isinstance(exited, SandboxExited)
                deps.events.publish(SandboxExitedEvent(spec.session_id, runtime,
                                                       exited.returncode))
                logger.warning("sandbox of %s exited with %s: %s", spec.session_id,
                               exited.returncode,
                               exited.stderr_tail[-2000:].decode("utf-8", "replace"))
            raise
        finally:
            if pid is not None and not ended_on_its_own:
                # We stopped it (retire, shutdown, respawn): a kill, and audited as one.
                deps.events.publish(SandboxStopped(spec.session_id, runtime,
                                                   "stopped by the control plane"))

    def _quarantine(self, reason: str) -> None:
        """The sandbox proved hostile: stop it and keep the session from restarting."""
        event = self._deps.quarantine.hold(self.session.id, self.session.agent_group_id,
                                           reason)
        if event is not None:
            self._deps.events.publish(event)
        self.stop("quarantined")

    async def _apply_acks(self, acks: Sequence[ProcessingAck]) -> None:
        writer = await self._deps.queues.inbound(self.session.id)
        await trio.to_thread.run_sync(lambda: writer.apply_acks(acks))

    async def _retire_when_idle(self) -> None:
        timeout = self._deps.settings.idle_timeout_s
        while True:
            remaining = self._last_activity + timeout - trio.current_time()
            claim = self._tail.state.oldest_claim_at if self._tail else None
            if remaining <= 0 and claim is None:
                self.stop("idle")
                return
            await trio.sleep(max(remaining, 1.0))
