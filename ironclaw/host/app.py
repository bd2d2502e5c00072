"""The control plane: builds the actor tree from a config. The one place that wires.

Start order follows dependency: key custody and host.db first, then the event bus,
model proxy, delivery, sessions, channels, router and sweeper. Everything runs in
one nursery, so cancelling it (SIGINT, SIGTERM) unwinds the whole tree: sandboxes are
stopped and reaped, sockets removed, host.db closed. Anything acknowledged to a
channel was committed to an inbound queue first, so nothing accepted is lost.
"""

from __future__ import annotations

import functools
import logging

import attrs
import httpx
import trio

from ironclaw.host.attachments import AttachmentInbox, GroupWorkspaces, WorkspaceFiles
from ironclaw.host.channels.transcripts import DurableTranscripts
from ironclaw.host.config.devseed import seed_dev
from ironclaw.host.config.statedir_lock import hold_state_dir
from ironclaw.host.inbound.inbox import SessionInbox
from ironclaw.host.inbound.queues import SessionQueues
from ironclaw.host.inbound.router import Router
from ironclaw.host.keys import FileMasterKeySource, KeyStore, Purpose, ensure_session_key_dir
from ironclaw.runtime import EventBus, LoopLagMonitor

from .audit import AuditLog, open_audit_log
from .audit.recorder import AuditRecorder
from .channels import ChannelAdapter, Channels, InboundEvent
from .channels.adapters import AdapterContext, create_adapter
from .channels.local import LocalChannel
from .channels.settings import ChannelSettings
from .channels.state import ChannelState, prune_seen_events
from .chatops import ChatApprovers, ChatCommands, ChatNotices
from .chatops.alerts import QuarantineAlerts
from .config import ControlPlaneConfig, choose_runtime
from .delivery import Delivery, DeliveryRecords
from .egress import EgressBroker
from .egress.connect import ConnectProxy
from .events import RuntimeSelected
from .gateway import Gateway, GatewayConfig, Grants, MountRoot
from .gateway.kinds.mounts import root_for
from .gateway.notifiers import Notifiers, SessionNotifier
from .inbound import Waker
from .isolation import HostMount, Isolator, ProcessIsolator
from .isolation.imagebuild import default_cache_dir
from .isolation.oci import OciIsolator
from .isolation.pinned import PinnedImage
from .isolation.process import reap_stale_agents
from .isolation.reconcile import reconcile_runtime_state
from .isolation.runtimes import OciRuntime, RuntimeKind
from .isolation.serverlaunch import ServerSandboxes
from .mailboxes import Respawns, open_sessions_mailbox
from .mcp import LauncherUnavailable, McpBroker, McpServerLauncher, launcher_for_runtime
from .mcp.sandboxed import OciLauncher, ensure_images
from .modelproxy import Credentials, ModelProxy
from .questions import Questions
from .registry import Registry
from .scheduling.scheduler import Scheduler
from .sessions import SessionDeps, SessionProgress, Sessions, SessionSettings
from .sessions.deletion import SessionDeleter
from .sessions.key_rotation import SessionKeyRotator
from .sessions.quarantine import Quarantine
from .sessions.warmpool import WarmPool
from .store import HostStore, open_host_store
from .store.changes import ChangeStore
from .sweeper import Sweeper, SweepPolicy

logger = logging.getLogger(__name__)


@attrs.frozen
class ControlPlaneHandles:
    """What a running control plane offers its surfaces (CLI, API, tests)."""

    config: ControlPlaneConfig
    runtime: str
    runtime_strength: str  # "gvisor", "shared-kernel" or "none"
    runtime_warning: str | None
    registry: Registry
    changes: ChangeStore
    local: LocalChannel
    channels: Channels
    sessions: Sessions
    delivery: Delivery
    scheduler: Scheduler
    questions: Questions
    events: EventBus
    store: HostStore
    gateway: Gateway
    audit: AuditLog
    chat_approvers: ChatApprovers
    loop_lag: LoopLagMonitor  # how long the event loop stalls (``/metrics``, red team)
    quarantine: Quarantine  # sessions held for proving hostile (``/v1/quarantine``)
    session_deleter: SessionDeleter  # ``DELETE /v1/sessions/{id}``, and retention
    session_keys: SessionKeyRotator  # ``POST /v1/sessions/{id}/rotate-key``
    # For the API's token hashes: a sub-key of the sealed root, stable across rotation.
    api_token_key: bytes = attrs.field(repr=False)
    pool: WarmPool | None = None  # warm sandboxes, when the runtime and config have them


def make_isolator(config: ControlPlaneConfig) -> tuple[Isolator, str | None]:
    runtime, warning = choose_runtime(config.runtime)
    if runtime == "process":
        return ProcessIsolator(allow_insecure=config.dev or config.allow_insecure_runtime), \
            warning
    found = OciRuntime.find(RuntimeKind(runtime), config.state_dir)
    if found is None:  # choose_runtime saw it on PATH a moment ago
        raise ValueError(f"runtime {runtime!r} is not installed")
    image = PinnedImage(config.state_dir, cache_dir=config.image_cache_dir,
                        refresh_stale=config.dev)
    return OciIsolator(found, image, state_dir=config.state_dir,
                       limits=config.sandbox_limits, mapping=config.user_mapping,
                       own_dirs=(config.key_directory().parent,),
                       disk=config.sandbox_disk,
                       protected=(config.image_cache_dir or default_cache_dir(),
                                  config.key_directory())), warning


def protected_paths(config: ControlPlaneConfig) -> tuple[str, ...]:
    """The plane's own places, which no granted mount may be, hold or lie inside."""
    return tuple(str(path.resolve()) for path in (
        config.state_dir, config.image_cache_dir or default_cache_dir(),
        config.key_directory()))


class GrantedMounts:
    """The sessions' view of the mount grants: each approved mount with the root it
    lies under as configured now. A mount whose root the operator has since removed,
    or made read-only while the mount is writable, is not bound (and logged)."""

    def __init__(self, grants: Grants, roots: tuple[MountRoot, ...]) -> None:
        self._grants = grants
        self._roots = roots

    async def mounts(self, agent_group_id: str) -> tuple[HostMount, ...]:
        bound = []
        for mount in await self._grants.mounts(agent_group_id):
            root = root_for(mount.source, self._roots)
            if root is None or not (mount.readonly or root.writable):
                logger.error("not binding the mount %s of agent group %s: no configured "
                             "root allows it any more", mount.source, agent_group_id)
                continue
            bound.append(HostMount(root.path, mount.source, mount.target,
                                   writable=not mount.readonly))
        return tuple(bound)


def _mcp_broker(config: ControlPlaneConfig, isolator: Isolator, grants: Grants,
                bus: EventBus) -> McpBroker | None:
    """The MCP broker, when the catalogue offers a server and the runtime has a way to
    run one as strongly as it runs agents (never a weaker one in its place): under an
    OCI runtime, each server instance in its own sandbox of that runtime."""
    if not (config.mcp.enabled and config.mcp.servers):
        return None
    launcher: McpServerLauncher
    if isinstance(isolator, OciIsolator):
        sandboxes = ServerSandboxes(isolator.runtime, state_dir=config.state_dir,
                                    mapping=isolator.mapping,
                                    ca_bundle=config.egress.ca_bundle)
        tunnels = (ConnectProxy(grants, config=config.egress, events=bus)
                   if config.egress.enabled else None)
        launcher = OciLauncher(sandboxes, state_dir=config.state_dir, tunnels=tunnels)
        return McpBroker(grants, launcher, config=config.mcp, events=bus)
    try:
        launcher = launcher_for_runtime(isolator.name)
    except LauncherUnavailable:
        logger.warning("MCP servers are configured, but runtime %r cannot run them: no "
                       "session gets MCP tools", isolator.name)
        return None
    return McpBroker(grants, launcher, config=config.mcp, events=bus)


async def _ensure_mcp_images(config: ControlPlaneConfig) -> None:
    """Build and pin the image of every catalogue server that has none yet, before any
    session can start one (a first build takes seconds per server)."""
    if config.mcp.enabled and config.mcp.servers:
        await trio.to_thread.run_sync(lambda: ensure_images(
            config.state_dir, [entry.server for entry in config.mcp.servers],
            cache_dir=config.image_cache_dir,
            progress=lambda line: logger.info("MCP server image: %s", line)))


def _platform_adapter(settings: ChannelSettings, store: HostStore, records: DeliveryRecords,
                      http: httpx.AsyncClient) -> ChannelAdapter:
    context = AdapterContext(state=ChannelState(store, settings.type, settings.instance),
                             ledger=records, http=http)
    return create_adapter(settings, context)


class ControlPlane:
    def __init__(self, config: ControlPlaneConfig, *,
                 credentials: Credentials | None = None,
                 isolator: Isolator | None = None) -> None:
        """``isolator`` replaces the one ``config`` would choose: the red-team harness
        passes one with its toolkit bound in."""
        self.config = config
        held = credentials if credentials is not None else Credentials.from_env()
        self._credentials = attrs.evolve(held, mock_model=config.mock_model)
        self._isolator = isolator

    def _gateway_config(self, *, mcp_runs: bool) -> GatewayConfig:
        """The gateway moves an agent group only to a provider the host can serve: one
        it holds credentials for (and, if the operator listed providers, one listed);
        and connects chats only on the channels this plane runs; and grants MCP servers
        only from the catalogue, and only while a broker runs them (a human never
        approves a grant that has no effect)."""
        usable = self._credentials.usable_providers()
        listed = self.config.gateway.providers
        channels = {("local", "local")} | {(s.type, s.instance or s.type)
                                           for s in self.config.channels}
        return attrs.evolve(
            self.config.gateway, providers=usable if listed is None else listed & usable,
            protected_paths=protected_paths(self.config), channels=frozenset(channels),
            mcp_catalog=self.config.mcp.gateway_catalog() if mcp_runs else {})

    async def run(self, *, task_status: trio.TaskStatus[ControlPlaneHandles] = (
            trio.TASK_STATUS_IGNORED)) -> None:
        """Run the plane on its state directory, which it holds alone (a second plane
        on the same directory raises StateDirInUse before touching anything)."""
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with hold_state_dir(self.config.state_dir, what="a control plane"):
            await self._run(task_status=task_status)

    async def _run(self, *, task_status: trio.TaskStatus[ControlPlaneHandles]) -> None:
        config = self.config
        state = config.state_dir
        # Refuse to start, rather than hand keys to a directory someone else controls.
        await trio.to_thread.run_sync(ensure_session_key_dir, config.key_directory())
        if self._isolator is not None:
            isolator, warning = self._isolator, None
        else:
            isolator, warning = make_isolator(config)
        if warning:
            logger.warning(warning)
        if isinstance(isolator, OciIsolator):
            # Before any session starts: a sandbox a killed control plane left running
            # would be a second writer on its session's outbound queue.
            await trio.to_thread.run_sync(reconcile_runtime_state, state)
            await isolator.check_image()
            await _ensure_mcp_images(config)
            await isolator.mount_volumes()
        elif isinstance(isolator, ProcessIsolator):
            await trio.to_thread.run_sync(reap_stale_agents, state)
        keystore = await trio.to_thread.run_sync(
            KeyStore.open, state, FileMasterKeySource.in_state_dir(state))
        bus = EventBus()
        queues = SessionQueues(state, keystore,
                               max_inbound_bytes=config.sandbox_disk.inbound_bytes,
                               events=bus)
        try:
            # The store is a context around the nursery, not a task in it: it must
            # close only after every actor that uses it has finished unwinding.
            async with open_host_store(state / "host.db", keystore.subkey(Purpose.HOST_DB)
                                       ) as store, \
                    open_audit_log(state, keystore.subkey(Purpose.AUDIT_CHAIN)) as audit, \
                    httpx.AsyncClient(timeout=30.0, follow_redirects=False) as http, \
                    trio.open_nursery() as nursery:
                registry = Registry(store)
                changes = ChangeStore(store)
                if config.dev:
                    await seed_dev(registry, provider=config.dev_provider,
                                   model=config.dev_model)
                proxy = ModelProxy(events=bus, credentials=self._credentials,
                                   limits=config.model_limits)
                await nursery.start(proxy.run)
                egress = (EgressBroker(Grants(store), config=config.egress, events=bus)
                          if config.egress.enabled else None)
                if egress is not None:
                    await nursery.start(egress.run)
                mcp = _mcp_broker(config, isolator, Grants(store), bus)
                if mcp is not None:
                    await nursery.start(mcp.run)

                sessions_mailbox = open_sessions_mailbox()
                waker = Waker(sessions_mailbox[0])
                inbox = SessionInbox(queues, waker)
                scheduler = Scheduler(store, inbox, events=bus)
                questions = Questions(store, inbox, events=bus)
                progress = SessionProgress(store, queues)
                router_send, router_receive = trio.open_memory_channel[InboundEvent](1024)
                # One ledger for every channel and for delivery: delivery_records.
                records = DeliveryRecords(store)
                local = LocalChannel(transcripts=DurableTranscripts(store), ledger=records)
                remote = [_platform_adapter(settings, store, records, http)
                          for settings in config.channels]
                channels = Channels([local, *remote], router_send, events=bus,
                                    policy=config.channel_backoff)
                notices = ChatNotices(store, channels, audit=audit, events=bus)
                quarantine = Quarantine(store, alerts=QuarantineAlerts(notices), events=bus)
                gateway_config = self._gateway_config(mcp_runs=mcp is not None)
                gateway = Gateway(store, audit, config=gateway_config,
                                  notifier=Notifiers(SessionNotifier(inbox), notices),
                                  respawner=Respawns(sessions_mailbox[0]), events=bus)
                workspaces = GroupWorkspaces(state, registry)
                delivery = Delivery(records=records, registry=registry, channels=channels,
                                    inbox=inbox, progress=progress, gate=gateway,
                                    scheduler=scheduler, questions=questions, events=bus,
                                    files=WorkspaceFiles(workspaces, config.attachments))
                key_dir = config.key_directory()
                pool = (WarmPool(isolator, registry, config.sandbox_pool, state_dir=state,
                                 key_dir=key_dir)
                        if isinstance(isolator, OciIsolator) and config.sandbox_pool.enabled
                        else None)
                session_deps = SessionDeps(
                    state_dir=state, registry=registry, queues=queues, isolator=isolator,
                    models=proxy, credentials=self._credentials, delivery=delivery,
                    progress=progress, events=bus,
                    settings=SessionSettings(
                        key_dir=key_dir, idle_timeout_s=config.idle_timeout_s,
                        safety_poll_s=config.safety_poll_s,
                        heartbeat_interval_s=config.heartbeat_interval_s,
                        sandbox_backoff=config.sandbox_backoff), egress=egress,
                    mounts=GrantedMounts(Grants(store), config.gateway.mount_roots),
                    mcp=mcp, quarantine=quarantine, pool=pool)
                sessions = Sessions(session_deps, mailbox=sessions_mailbox)
                session_deleter = SessionDeleter(store=store, sessions=sessions,
                                                 deps=session_deps,
                                                 forget_key=keystore.delete_session,
                                                 keyed_sessions=keystore.session_ids)
                session_keys = SessionKeyRotator(deps=session_deps, sessions=sessions,
                                                 custody=keystore)
                commands = ChatCommands(
                    approvers=ChatApprovers(store, registry, audit), gateway=gateway,
                    channels=channels, audit=audit, events=bus)
                router = Router(registry, queues, waker, events=bus,
                                access_gate=gateway, notices=notices, commands=commands,
                                attachments=AttachmentInbox(workspaces, config.attachments))

                loop_lag = LoopLagMonitor()
                await nursery.start(loop_lag.run)
                await nursery.start(AuditRecorder(bus, audit).run)
                bus.publish(RuntimeSelected(isolator.name, isolator.strength.value, warning))
                await nursery.start(gateway.run)
                await nursery.start(delivery.run)
                await nursery.start(quarantine.run)  # holds loaded before any session starts
                if pool is not None:
                    # A killed plane's warm slots first: to the orphan reaper they
                    # would look like sessions with no row, and some hold a session's.
                    await pool.clear_leftovers()
                await session_deleter.reap_orphans()  # before any session starts
                await session_keys.recover()  # likewise: a rotation a crash cut short
                if pool is not None:
                    await nursery.start(pool.run)
                await nursery.start(sessions.run)
                await nursery.start(notices.run)
                await nursery.start(commands.run)
                await nursery.start(router.run, router_receive)
                await nursery.start(channels.run)
                await nursery.start(Sweeper(
                    scheduler=scheduler, questions=questions, records=records,
                    sessions=sessions, sessions_mailbox=sessions_mailbox[0], queues=queues,
                    events=bus, policy=SweepPolicy(
                        interval=config.sweep_interval_s,
                        heartbeat_timeout=config.stuck_heartbeat_s,
                        stop_cooldown=config.stuck_stop_cooldown_s,
                        inbound_retention=config.inbound_retention_s,
                        session_retention=config.session_retention_s),
                    seen_events=functools.partial(prune_seen_events, store),
                    idle_sessions=session_deleter.delete_idle).run)
                task_status.started(ControlPlaneHandles(
                    config=config, runtime=isolator.name,
                    runtime_strength=isolator.strength.value, runtime_warning=warning,
                    registry=registry,
                    changes=changes, local=local, channels=channels, sessions=sessions,
                    delivery=delivery,
                    scheduler=scheduler, questions=questions, events=bus, store=store,
                    gateway=gateway, audit=audit, chat_approvers=commands.approvers,
                    loop_lag=loop_lag, quarantine=quarantine,
                    session_deleter=session_deleter, session_keys=session_keys,
                    api_token_key=keystore.subkey(Purpose.API_TOKEN_HASH), pool=pool))
        finally:
            with trio.CancelScope(shield=True):
                if isinstance(isolator, OciIsolator):
                    await isolator.aclose()
                await queues.aclose()
                keystore.close()
